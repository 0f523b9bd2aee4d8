/*
 * IMAP load client in C: the cycle of bench/imap_mixed.py, without Python's
 * cost per command (imaplib under one GIL takes 0.3-0.5 of a CPU at 3,000
 * commands/s on this machine, and adds ~1 ms to every round trip).
 *
 * Usage: imap_load HOST PORT USER_PATTERN PASSWORD CLIENTS SECONDS MODE [FIRST]
 *   USER_PATTERN: a login name with one "%d" (client number, from FIRST, 0 by default)
 *   MODE: "held" (log in once per client) or "login" (log in and out every cycle)
 * Prints "commands N seconds S" on stdout; errors on stderr, exit status 1.
 *
 * One thread per client with blocking sockets: the work per command is tiny,
 * so the threads spend their time waiting for the server, as imaptest's
 * clients do. Responses are read up to their tagged line; literals ({n})
 * inside responses are skipped by count (RFC 9051 section 4.3).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host, *port, *user_pattern, *password;
static int held;
static double deadline;
static int first_user;

/* Round trips by command kind, for --latency. */
enum kind { K_LOGIN, K_SELECT, K_SEARCH, K_FETCH, K_STORE, K_APPEND, K_EXPUNGE, K_LOGOUT, K_N };
static const char *kind_names[K_N] = {"LOGIN", "SELECT", "UID SEARCH", "UID FETCH",
                                      "UID STORE", "APPEND", "EXPUNGE", "LOGOUT"};

struct client {
    int id;
    long kind_count[K_N];
    double kind_seconds[K_N];
    double sent_at;
    int fd;
    char buf[1 << 16];
    size_t start, end;
    long commands;
    int tag;
    /* UIDs from the last UID SEARCH ALL */
    long uids[4096];
    int nuids;
    int failed;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(struct client *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "client %d: ", c->id);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    c->failed = 1;
}

static int fill(struct client *c) {
    if (c->start > 0 && c->start == c->end) c->start = c->end = 0;
    if (c->end == sizeof c->buf) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    ssize_t n = recv(c->fd, c->buf + c->end, sizeof c->buf - c->end, 0);
    if (n <= 0) return -1;
    c->end += (size_t)n;
    return 0;
}

/* One line (without CRLF) into line (at most cap-1 chars kept); -1 on EOF. */
static int read_line(struct client *c, char *line, size_t cap) {
    size_t kept = 0;
    for (;;) {
        char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
        size_t take = nl ? (size_t)(nl - (c->buf + c->start)) + 1 : c->end - c->start;
        size_t copy = take < cap - 1 - kept ? take : cap - 1 - kept;
        memcpy(line + kept, c->buf + c->start, copy);
        kept += copy;
        c->start += take;
        if (nl) break;
        if (fill(c) < 0) return -1;
    }
    while (kept > 0 && (line[kept - 1] == '\n' || line[kept - 1] == '\r')) kept--;
    line[kept] = 0;
    return 0;
}

static int skip_bytes(struct client *c, long n) {
    while (n > 0) {
        if (c->start == c->end && fill(c) < 0) return -1;
        size_t have = c->end - c->start;
        size_t take = (size_t)n < have ? (size_t)n : have;
        c->start += take;
        n -= (long)take;
    }
    return 0;
}

static int send_all(struct client *c, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A literal {n} (or {n+}) at the end of a line: its size, else -1. */
static long literal_size(const char *line) {
    size_t len = strlen(line);
    if (len < 3 || line[len - 1] != '}') return -1;
    const char *open = strrchr(line, '{');
    if (!open) return -1;
    return strtol(open + 1, NULL, 10);
}

/* Read responses up to our tagged one; SEARCH results go to c->uids. */
static int finish(struct client *c, const char *tag, int want_search) {
    char line[8192];
    size_t taglen = strlen(tag);
    if (want_search) c->nuids = 0;
    for (;;) {
        if (read_line(c, line, sizeof line) < 0) {
            fail(c, "connection closed waiting for %s", tag);
            return -1;
        }
        long lit;
        while ((lit = literal_size(line)) >= 0) {
            if (skip_bytes(c, lit) < 0 || read_line(c, line, sizeof line) < 0) {
                fail(c, "connection closed in a literal");
                return -1;
            }
        }
        if (want_search && strncmp(line, "* SEARCH", 8) == 0) {
            char *p = line + 8;
            while (*p && c->nuids < (int)(sizeof c->uids / sizeof c->uids[0])) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p) break;
                c->uids[c->nuids++] = v;
                p = end;
            }
        }
        if (strncmp(line, tag, taglen) == 0 && line[taglen] == ' ') {
            if (strncmp(line + taglen + 1, "OK", 2) != 0) {
                fail(c, "%s", line);
                return -1;
            }
            c->commands++;
            return 0;
        }
    }
}

static enum kind kind_of(const char *cmd) {
    for (int k = 0; k < K_N; k++)
        if (strncmp(cmd, kind_names[k], strlen(kind_names[k])) == 0) return (enum kind)k;
    return K_N;
}

static void count(struct client *c, enum kind k) {
    if (k < K_N) {
        c->kind_count[k]++;
        c->kind_seconds[k] += now() - c->sent_at;
    }
}

static int command(struct client *c, int want_search, const char *fmt, ...) {
    char tag[16], cmd[1024];
    snprintf(tag, sizeof tag, "a%d", ++c->tag);
    int n = snprintf(cmd, sizeof cmd, "%s ", tag);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    n += snprintf(cmd + n, sizeof cmd - (size_t)n, "\r\n");
    c->sent_at = now();
    if (send_all(c, cmd, (size_t)n) < 0) {
        fail(c, "send failed");
        return -1;
    }
    int rc = finish(c, tag, want_search);
    if (rc == 0) count(c, kind_of(cmd + strlen(tag) + 1));
    return rc;
}

/* The bytes of bench/imap_mixed.py's message(i). */
static int message(char *out, size_t cap, long i) {
    int n = snprintf(out, cap,
                     "From: Sender %ld <sender%ld@example.org>\r\nTo: user@example.test\r\n"
                     "Subject: bench message %ld\r\nMessage-ID: <%ld@bench>\r\n"
                     "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\n",
                     i, i, i, i);
    for (int k = 0; k < 60 && (size_t)n < cap; k++)
        n += snprintf(out + n, cap - (size_t)n, "line %d of message %ld: the quick brown fox\r\n", k, i);
    return n;
}

static int append(struct client *c, long i) {
    char body[4096], tag[16], cmd[128], line[1024];
    int size = message(body, sizeof body, i);
    snprintf(tag, sizeof tag, "a%d", ++c->tag);
    int n = snprintf(cmd, sizeof cmd, "%s APPEND INBOX {%d}\r\n", tag, size);
    c->sent_at = now();
    if (send_all(c, cmd, (size_t)n) < 0 || read_line(c, line, sizeof line) < 0) {
        fail(c, "APPEND: connection lost");
        return -1;
    }
    if (line[0] != '+') {
        fail(c, "APPEND: %s", line);
        return -1;
    }
    if (send_all(c, body, (size_t)size) < 0 || send_all(c, "\r\n", 2) < 0) {
        fail(c, "APPEND: send failed");
        return -1;
    }
    int rc = finish(c, tag, 0);
    if (rc == 0) count(c, K_APPEND);
    return rc;
}

static int connect_login(struct client *c) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        fail(c, "cannot resolve %s", host);
        return -1;
    }
    c->fd = socket(res->ai_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, res->ai_addr, res->ai_addrlen) < 0) {
        freeaddrinfo(res);
        fail(c, "cannot connect: %s", strerror(errno));
        return -1;
    }
    freeaddrinfo(res);
    c->start = c->end = 0;
    char line[1024], user[256];
    if (read_line(c, line, sizeof line) < 0 || strncmp(line, "* OK", 4) != 0) {
        fail(c, "no greeting");
        return -1;
    }
    snprintf(user, sizeof user, user_pattern, c->id + first_user);
    return command(c, 0, "LOGIN \"%s\" \"%s\"", user, password);
}

static int logout(struct client *c) {
    int rc = command(c, 0, "LOGOUT");
    close(c->fd);
    return rc;
}

/* One round of the mix, as imap_mixed.cycle (11 commands with mail). */
static int cycle(struct client *c, long n) {
    if (command(c, 0, "SELECT INBOX") < 0) return -1;
    if (command(c, 1, "UID SEARCH ALL") < 0) return -1;
    int have = c->nuids;
    long first = have ? c->uids[0] : 0, last = have ? c->uids[have - 1] : 0;
    if (command(c, 0, "UID FETCH 1:* (FLAGS)") < 0) return -1;
    if (have) {
        char set[256] = "";
        size_t off = 0;
        for (int k = have > 10 ? have - 10 : 0; k < have; k++)
            off += (size_t)snprintf(set + off, sizeof set - off, "%s%ld", off ? "," : "", c->uids[k]);
        if (command(c, 0, "UID FETCH %s (ENVELOPE)", set) < 0) return -1;
        if (command(c, 0, "UID FETCH %ld (BODY.PEEK[])", last) < 0) return -1;
        if (command(c, 0, "UID STORE %ld +FLAGS (\\Seen)", last) < 0) return -1;
    }
    if (command(c, 1, "UID SEARCH UNSEEN") < 0) return -1;
    if (command(c, 1, "UID SEARCH SUBJECT \"message %ld\"", n % 200) < 0) return -1;
    if (append(c, n) < 0) return -1;
    if (have) {
        if (command(c, 0, "UID STORE %ld +FLAGS (\\Deleted)", first) < 0) return -1;
        if (command(c, 0, "EXPUNGE") < 0) return -1;
    }
    return 0;
}

static void *run(void *arg) {
    struct client *c = arg;
    long n = 0;
    if (held && connect_login(c) < 0) return NULL;
    while (!c->failed && now() < deadline) {
        if (!held && connect_login(c) < 0) break;
        if (cycle(c, n++) < 0) break;
        if (!held && logout(c) < 0) break;
    }
    if (held && !c->failed) logout(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s HOST PORT USER_PATTERN PASSWORD CLIENTS SECONDS held|login [FIRST]\n",
                argv[0]);
        return 2;
    }
    host = argv[1];
    port = argv[2];
    user_pattern = argv[3];
    password = argv[4];
    int clients = atoi(argv[5]);
    double seconds = atof(argv[6]);
    held = strcmp(argv[7], "held") == 0;
    first_user = argc > 8 ? atoi(argv[8]) : 0;
    struct client *cs = calloc((size_t)clients, sizeof *cs);
    pthread_t *threads = calloc((size_t)clients, sizeof *threads);
    double t0 = now();
    deadline = t0 + seconds;
    for (int i = 0; i < clients; i++) {
        cs[i].id = i;
        pthread_create(&threads[i], NULL, run, &cs[i]);
    }
    long total = 0;
    int failed = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(threads[i], NULL);
        total += cs[i].commands;
        failed |= cs[i].failed;
    }
    printf("commands %ld seconds %.3f\n", total, now() - t0);
    /* Then each kind's round trips: "round NAME count total_seconds". */
    for (int k = 0; k < K_N; k++) {
        long n = 0;
        double s = 0;
        for (int i = 0; i < clients; i++) {
            n += cs[i].kind_count[k];
            s += cs[i].kind_seconds[k];
        }
        if (n) printf("round %s %ld %.6f\n", kind_names[k], n, s);
    }
    return failed ? 1 : 0;
}
