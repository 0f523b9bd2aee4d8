"""SMTP servers: inbound MX (port 25), submission (587/465), and their shared policy."""
