def main() -> None:
    raise SystemExit("pochta: CLI not built yet")
