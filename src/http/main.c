/* SPDX-License-Identifier: MIT */
/* profiled: serves the Profile API and the Tracking API over HTTP (docs/http-api.md). Parses flags,
 * opens the data directory and its write-key catalog, runs the server until SIGINT or SIGTERM,
 * then commits what was accepted, answers it, and exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_int.h"
#include "ps/log.h"

static const char usage[] =
    "usage: profiled [--data DIR] [--listen HOST:PORT] [--ingest-listen HOST:PORT]\n"
    "                [--metrics-listen HOST:PORT] [--public-url URL] [--threads N]\n"
    "                [--timeout-ms MS]\n"
    "                [--max-connections N] [--body-memory-mb MB] [--anonymous-body-mb MB]\n"
    "                [--batch-events N] [--batch-ms MS] [--queue-mb MB]\n"
    "                [--log-format logfmt|json] [--access-log]\n"
    "                [--replicate nats://HOST:PORT[,...]] [--replicas N]\n"
    "\n"
    "Serves the Segment-compatible Profile API and Tracking API for every space under DIR.\n"
    "\n"
    "  --data DIR           data directory (default $PROFILED_DATA, else ./var)\n"
    "  --listen HOST:PORT   address to listen on (default 127.0.0.1:8080; port 0 picks one)\n"
    "  --ingest-listen HOST:PORT\n"
    "                       serve the Tracking API (/v1/track, /v1/batch, ...) here instead\n"
    "  --metrics-listen HOST:PORT\n"
    "                       serve /metrics with per-space series here (bind it to a private\n"
    "                       address); /metrics on --listen never names spaces\n"
    "  --public-url URL     where clients reach this server (http(s)://host[:port][/path]):\n"
    "                       the settings document analytics.js loads points there, and\n"
    "                       Profile API cursor URLs are absolute under it (default: the\n"
    "                       request's Host for the former, relative URLs for the latter)\n"
    "  --threads N          event loops sharing the listeners (default: number of cores)\n"
    "  --timeout-ms MS      a request must arrive whole (head and body) within MS of its\n"
    "                       first byte, a reply must be taken within MS, and an idle\n"
    "                       connection is closed after MS (default 10000)\n"
    "  --max-connections N  open client connections at most; beyond, new ones wait in the\n"
    "                       kernel's queue (default 4096, lowered to fit the descriptor limit)\n"
    "  --body-memory-mb MB  request bodies being received may hold this much memory; beyond\n"
    "                       it a request gets 503 (default 256)\n"
    "  --anonymous-body-mb MB\n"
    "                       of which bodies whose sender has not shown a write key in the\n"
    "                       Authorization header (writeKey in the body) (default 32)\n"
    "  --batch-events N     journal group: at most N accepted events per sync (default 5000)\n"
    "  --batch-ms MS        the store takes journaled events in transactions of MS (default\n"
    "                       200); a read that must see them commits at once\n"
    "  --queue-mb MB        events waiting for a space's writer may hold this much memory;\n"
    "                       beyond it the Tracking API answers 503 (default 64)\n"
    "  --log-format logfmt|json\n"
    "                       how log lines are written on stderr (default logfmt; also the\n"
    "                       PS_LOG_FORMAT environment variable); PS_LOG_LEVEL=debug|info|\n"
    "                       warn|error sets the least severe level shown (default info)\n"
    "  --access-log         a line per answered request: method, route, status, bytes,\n"
    "                       duration and request id (never the path, which may name people)\n"
    "  --replicate nats://HOST:PORT[,nats://HOST:PORT...]\n"
    "                       replicated mode for every space (docs/replication.md): accepted\n"
    "                       events go to the space's NATS JetStream stream and are answered\n"
    "                       once the stream has stored them; the store applies the stream\n"
    "  --replicas N         copies JetStream keeps of a new stream (default: the number of\n"
    "                       servers given, at most 3)\n"
    "  --routes             list every route served (method and path), then exit\n"
    "  --help               show this text\n"
    "  --version            print the version\n"
    "\n"
    "GET /healthz answers {\"status\":\"ok\"} once ready; GET /metrics is Prometheus text.\n"
    "docs/security.md lists every limit and what a client gets when it is reached.\n"
    "A Tracking API request is answered 200 only once its events are durable on disk.\n"
    "Create spaces, access tokens and sources (write keys) with profilectl; they take effect\n"
    "without a restart.\n";

static void open_space(void *ud, ps_space *sp)
{
    (void)ud;
    (void)sp;
}

static int bad_usage(const char *what, const char *arg)
{
    fprintf(stderr, "profiled: %s `%s`\nrun `profiled --help` for usage\n", what, arg);
    return 1;
}

/* --public-url: http(s)://host[:port][/path]; copied to `out` without trailing slashes. */
static bool public_url_ok(const char *v, char out[201])
{
    size_t skip = strncmp(v, "https://", 8) == 0 ? 8 : strncmp(v, "http://", 7) == 0 ? 7 : 0;
    size_t len = strlen(v);
    while (len > skip && v[len - 1] == '/')
        len--;
    if (skip == 0 || len == skip || len > 200 || v[skip] == '/' ||
        !http_url_host_chars_ok(v + skip, len - skip))
        return false;
    memcpy(out, v, len);
    out[len] = 0;
    return true;
}

static bool parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

/* `--routes`: every route served, one "METHOD PATH" line each; exit 1 when the table
 * and the routers disagree about one. */
static int print_routes(void)
{
    int rc = 0;
    for (size_t i = 0; i < http_route_count; i++) {
        char why[400];
        if (!http_route_entry_check(&http_routes[i], why, sizeof why)) {
            fprintf(stderr, "profiled: route table entry wrong: %s\n", why);
            rc = 1;
        }
        printf("%s %s\n", http_routes[i].method, http_routes[i].path);
    }
    return rc;
}

int main(int argc, char **argv)
{
    ps_mem_keep_freed();
    ps_log_init(PS_LOG_INFO);
    const char *env = getenv("PROFILED_DATA");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    http_config cfg = {
        .data_dir = env && *env ? env : "./var",
        .listen = "127.0.0.1:8080",
        .threads = cores > 0 && cores < 256 ? (int)cores : 2,
        .timeout_ms = 10000,
        .max_header_bytes = 16 * 1024,
        .max_body_bytes = 1024 * 1024, /* over the 500 KB batch limit */
        .max_connections = 4096,
    };
    int batch_events = 0, batch_ms = 0, queue_mb = 64, body_mb = 256, anon_mb = 32;
    ps_repl_opts repl_opts = {0};
    static char public_url[201];
    ps_log_format log_format = PS_LOG_LOGFMT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("profiled %s\n", PS_VERSION);
            return 0;
        }
        if (strcmp(a, "--routes") == 0) /* the route table, each entry checked */
            return print_routes();
        if (strcmp(a, "--access-log") == 0) {
            cfg.access_log = true;
            continue;
        }
        bool takes = strcmp(a, "--data") == 0 || strcmp(a, "--listen") == 0 ||
                     strcmp(a, "--threads") == 0 || strcmp(a, "--timeout-ms") == 0 ||
                     strcmp(a, "--ingest-listen") == 0 || strcmp(a, "--batch-events") == 0 ||
                     strcmp(a, "--batch-ms") == 0 || strcmp(a, "--queue-mb") == 0 ||
                     strcmp(a, "--metrics-listen") == 0 || strcmp(a, "--public-url") == 0 ||
                     strcmp(a, "--max-connections") == 0 || strcmp(a, "--body-memory-mb") == 0 ||
                     strcmp(a, "--anonymous-body-mb") == 0 || strcmp(a, "--log-format") == 0 ||
                     strcmp(a, "--replicate") == 0 || strcmp(a, "--replicas") == 0;
        if (!takes)
            return bad_usage("unknown option", a);
        if (v == NULL)
            return bad_usage("missing value for option", a);
        i++;
        if (strcmp(a, "--data") == 0)
            cfg.data_dir = v;
        else if (strcmp(a, "--listen") == 0)
            cfg.listen = v;
        else if (strcmp(a, "--ingest-listen") == 0)
            cfg.ingest_listen = v;
        else if (strcmp(a, "--metrics-listen") == 0)
            cfg.metrics_listen = v;
        else if (strcmp(a, "--public-url") == 0 && !public_url_ok(v, public_url))
            return bad_usage("--public-url must be http(s)://host[:port][/path], got", v);
        else if (strcmp(a, "--public-url") == 0)
            cfg.public_url = public_url;
        else if (strcmp(a, "--max-connections") == 0 &&
                 !parse_int(v, 1, 1000000, &cfg.max_connections))
            return bad_usage("--max-connections must be a number from 1 to 1000000, got", v);
        else if (strcmp(a, "--body-memory-mb") == 0 && !parse_int(v, 1, 65536, &body_mb))
            return bad_usage("--body-memory-mb must be a number from 1 to 65536, got", v);
        else if (strcmp(a, "--anonymous-body-mb") == 0 && !parse_int(v, 1, 65536, &anon_mb))
            return bad_usage("--anonymous-body-mb must be a number from 1 to 65536, got", v);
        else if (strcmp(a, "--batch-events") == 0 && !parse_int(v, 1, 1000000, &batch_events))
            return bad_usage("--batch-events must be a number from 1 to 1000000, got", v);
        else if (strcmp(a, "--batch-ms") == 0 && !parse_int(v, 1, 60000, &batch_ms))
            return bad_usage("--batch-ms must be a number from 1 to 60000, got", v);
        else if (strcmp(a, "--queue-mb") == 0 && !parse_int(v, 1, 65536, &queue_mb))
            return bad_usage("--queue-mb must be a number from 1 to 65536, got", v);
        else if (strcmp(a, "--log-format") == 0 && !ps_log_format_parse(v, &log_format))
            return bad_usage("--log-format must be logfmt or json, got", v);
        else if (strcmp(a, "--log-format") == 0)
            ps_log_set_format(log_format);
        else if (strcmp(a, "--replicate") == 0)
            repl_opts.urls = v;
        else if (strcmp(a, "--replicas") == 0 &&
                 !parse_int(v, 1, PS_REPL_MAX_REPLICAS, &repl_opts.replicas))
            return bad_usage("--replicas must be a number from 1 to 5, got", v);
        else if (strcmp(a, "--threads") == 0 && !parse_int(v, 1, 256, &cfg.threads))
            return bad_usage("--threads must be a number from 1 to 256, got", v);
        else if (strcmp(a, "--timeout-ms") == 0 && !parse_int(v, 10, 3600000, &cfg.timeout_ms))
            return bad_usage("--timeout-ms must be a number from 10 to 3600000, got", v);
    }
    struct stat sb;
    if (stat(cfg.data_dir, &sb) != 0 && mkdir(cfg.data_dir, 0755) != 0) {
        fprintf(stderr, "profiled: cannot create data directory %s: %s\n", cfg.data_dir,
                strerror(errno));
        return 4;
    }
    /* every idle keep-alive connection is a descriptor: allow as many as the system does */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* keep descriptors for spaces (LMDB files), the catalog, logs and listeners: connections
     * beyond what the limit leaves would only meet EMFILE */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long room = (long)rl.rlim_cur - 64 - (long)rl.rlim_cur / 4;
        if (room < 16)
            room = 16;
        if (cfg.max_connections > room) {
            ps_log(PS_LOG_WARN,
                   "msg=\"max-connections lowered to fit the descriptor limit\" "
                   "max_connections=%ld nofile=%llu",
                   room, (unsigned long long)rl.rlim_cur);
            cfg.max_connections = (int)room;
        }
    }
    cfg.body_memory_bytes = (size_t)body_mb << 20;
    cfg.anonymous_body_bytes = (size_t)anon_mb << 20;
    /* the main thread waits for the signals; workers never see them */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a peer that hung up is an error on write, not a kill */
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is a failed write, not a kill */
    if (ps_space_env_check() != PS_OK)
        return bad_usage("PS_MAP_SIZE must be a number of bytes from 64 KiB to 64 TiB, got",
                         getenv("PS_MAP_SIZE"));
    if (repl_opts.replicas && repl_opts.urls == NULL)
        return bad_usage("--replicas needs --replicate, got", "--replicas");
    ps_repl *repl = NULL;
    if (repl_opts.urls) {
        char why[200];
        ps_status rs = ps_repl_connect(&repl_opts, &repl, why, sizeof why);
        if (rs == PS_EINVAL)
            return bad_usage(why, repl_opts.urls);
        if (rs != PS_OK) {
            fprintf(stderr, "profiled: %s\n", why);
            return 4;
        }
    }
    cfg.writer = (ps_writer_opts){(size_t)batch_events, batch_ms, (size_t)queue_mb << 20, repl};
    ps_sources *sources;
    ps_status st = ps_sources_open(cfg.data_dir, true, &sources);
    if (st != PS_OK) {
        fprintf(stderr, "profiled: cannot open the write-key catalog %s/meta: %s\n", cfg.data_dir,
                ps_status_str(st));
        return 4;
    }
    registry *reg = http_registry_new(cfg.data_dir, sources, &cfg.writer);
    server *srv;
    if (http_server_start(&cfg, reg, &srv) != 0) {
        http_registry_free(reg);
        ps_sources_close(sources);
        ps_repl_close(repl);
        return 4;
    }
    if (repl) /* every space applies its stream from now on, not from its first request */
        http_registry_each(reg, open_space, NULL);
    int sig = 0;
    for (;;) { /* replicated, a space created while the server runs applies its stream at
                * once, not from its first request: look for new ones every second */
        struct timespec tick = {1, 0};
        sig = sigtimedwait(&stop, NULL, &tick);
        if (sig > 0)
            break;
        if (repl)
            http_registry_each(reg, open_space, NULL);
    }
    ps_log(PS_LOG_INFO, "msg=\"stopping\" signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_server_stop(srv);
    http_registry_free(reg);
    ps_sources_close(sources);
    if (repl) {
        ps_repl_close(repl);
        ps_repl_shutdown();
    }
    ps_log(PS_LOG_INFO, "msg=stopped");
    return 0;
}
