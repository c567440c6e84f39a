/* main.c - the `steward` binary: init, serve, demo, ingest, audit verify.
 *
 * Configuration for `serve` comes from four layers, later ones winning: the defaults in
 * limits.h, the configuration file (--config FILE or STEWARD_CONFIG; read by config.c), the
 * STEWARD_* environment variables, then command-line flags. All layers use the same keys
 * (serve_settings[]) and the same checks (apply_setting). The result is one struct
 * server_config, validated here and read-only afterwards.
 *
 * Signals: SIGINT and SIGTERM are caught by a handler that only writes the signal number
 * into a pipe; the main thread waits on that pipe, then drains the server, closes the store
 * and exits 0. A mask alone (block in every thread, sigwait in main) is not enough: threads
 * that libraries start before main() (OpenBLAS's pool, loaded with FAISS) keep the default
 * disposition, so a SIGTERM that arrives while main is not yet in sigwait() lands on one of
 * them and kills the process without a drain. Our own threads (libmicrohttpd's, the
 * checkpointer) still start with both signals blocked, so the handler never interrupts them.
 *
 * Output contract (docs/api.md): `init` prints exactly one JSON line on stdout; `serve` prints
 * exactly one line "listening on http://HOST:PORT" on stdout once it accepts connections;
 * everything else (logs, errors, usage) goes to stderr. Usage errors exit 2.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "demo.h"
#include "http.h"
#include "ingest.h"
#include "limits.h"
#include "log.h"
#include "steward.h"

#define EXIT_USAGE 2
#define DRAIN_MS   10000u /* how long a stopping server waits for requests in progress */

static int sig_pipe[2] = {-1, -1};

/* Async-signal-safe: one byte, the signal number, into the pipe the main thread reads. */
static void on_stop_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;

    if (write(sig_pipe[1], &b, 1) < 0) {
        /* the pipe is full only if a stop is already pending */
    }
    errno = saved;
}

/* Installs the stop handler for SIGINT and SIGTERM; 0 or -1. */
static int stop_signals_catch(void)
{
    struct sigaction sa;

    if (pipe(sig_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC) != 0 ||
            fcntl(sig_pipe[i], F_SETFL, O_NONBLOCK) != 0)
            return -1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -1;
    return 0;
}

/* Blocks until a stop signal was caught; returns its number. */
static int stop_signal_wait(void)
{
    unsigned char b = 0;
    struct pollfd pfd = {sig_pipe[0], POLLIN, 0};

    for (;;) {
        ssize_t n = read(sig_pipe[0], &b, 1);

        if (n == 1)
            return b;
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return SIGTERM; /* cannot wait any more: stop as if told to */
        if (n < 0 && errno == EAGAIN)
            poll(&pfd, 1, -1);
    }
}

static void usage(void)
{
    fputs("usage: steward <command> [options]\n"
          "\n"
          "commands:\n"
          "  init  --data DIR                 create an empty store; prints the admin API key\n"
          "  serve --data DIR [--config FILE] [--listen HOST:PORT] [--threads N]\n"
          "        [--max-body BYTES] [--max-header BYTES] [--request-timeout SECONDS]\n"
          "        [--max-k N] [--log-level debug|info|warn|error]\n"
          "        [--strategy auto|exact|hnsw|cells] [--hnsw-min-rows N] [--hnsw-ef N]\n"
          "        [--exact-max-rows N] [--quantized-min-rows N] [--binary-min-rows N]\n"
          "        [--cells-max N] [--cells-min-share FRACTION] [--rows-memory-max BYTES]\n"
          "        [--walk-blocks on|off] [--audit-sync normal|full]\n"
          "        [--purpose-rule PURPOSE:k=N,text=all|deidentified|none]...\n"
          "                                   serve the HTTP API (default 127.0.0.1:8080;\n"
          "                                   port 0 picks a free port)\n"
          "  demo  [--data DIR]               build a demo store and walk through it\n"
          "  audit head --data DIR            print the chain's head (pin it elsewhere)\n"
          "  audit verify --data DIR [--head sha256:... --events N]\n"
          "                                   check the audit hash chain offline, and\n"
          "                                   against a pinned head (cut-off tail)\n"
          "  audit export --data DIR --format fhir [--since T] [--until T]\n"
          "                                   FHIR R4 AuditEvent resources as NDJSON\n"
          "  ingest --data DIR --product P --version V FILE.jsonl [--publish]\n"
          "        [--vectors FILE.f32] [--batch N] [--key API_KEY]\n"
          "                                   bulk load chunks (creates the draft if needed)\n"
          "  verify-version --data DIR --product P --version V\n"
          "                                   check a published version's files against the\n"
          "                                   store; prints a JSON report, exit 1 on problems\n"
          "  help                             this text\n"
          "\n"
          "config file (--config FILE or STEWARD_CONFIG): `key = value` lines, the keys being\n"
          "the flag names without '--'; overridden by the environment and the flags.\n"
          "environment (overridden by flags): STEWARD_DATA, STEWARD_LISTEN, STEWARD_THREADS,\n"
          "STEWARD_MAX_BODY, STEWARD_MAX_K, STEWARD_LOG_LEVEL, STEWARD_STRATEGY,\n"
          "STEWARD_HNSW_MIN_ROWS, STEWARD_HNSW_EF, STEWARD_EXACT_MAX_ROWS, STEWARD_AUDIT_SYNC,\n"
          "STEWARD_PURPOSE_RULES (';'-separated rules), STEWARD_REQUEST_TIMEOUT,\n"
          "STEWARD_MAX_HEADER\n",
          stderr);
}

/* ---- option parsing ---------------------------------------------------------------------- */

/* If argv[*i] is `name VALUE` or `name=VALUE`, sets *value, advances *i past it and returns 1.
 * Returns -1 when the flag is there but its value is missing, 0 when argv[*i] is another arg. */
static int take_flag(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    const char *a = argv[*i];

    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "steward: %s needs a value\n", name);
        return -1;
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

/* Strict decimal in lo..hi; 0 on success. */
static int parse_size(const char *s, size_t lo, size_t hi, size_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT" into cfg->host / cfg->port; 0 on success. */
static int parse_listen(const char *s, struct server_config *cfg)
{
    const char *colon, *host = s;
    size_t hostlen, port = 0;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            return -1;
        host = s + 1;
        hostlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hostlen = (size_t)(colon - s);
    }
    if (hostlen == 0 || hostlen >= sizeof cfg->host)
        return -1;
    if (parse_size(colon + 1, 0, 65535, &port) != 0)
        return -1;
    memcpy(cfg->host, host, hostlen);
    cfg->host[hostlen] = '\0';
    cfg->port = (uint16_t)port;
    return 0;
}

static void print_error(const char *cmd, const stw_error *err)
{
    fprintf(stderr, "steward %s: %s (%s)\n", cmd, err->message,
            err->name[0] != '\0' ? err->name : stw_code_name(err->code));
}

/* ---- init -------------------------------------------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
    const char *data = getenv("STEWARD_DATA");
    char key[STW_KEY_MAX];
    stw_error err;
    cJSON *out = NULL;
    char *line = NULL;
    int status = 1, i;

    memset(key, 0, sizeof key);
    memset(&err, 0, sizeof err);
    for (i = 1; i < argc; i++) {
        int r = take_flag(argc, argv, &i, "--data", &data);

        if (r < 0)
            return EXIT_USAGE;
        if (r == 0) {
            fprintf(stderr, "steward init: unknown argument '%s'\n", argv[i]);
            usage();
            return EXIT_USAGE;
        }
    }
    if (data == NULL || data[0] == '\0') {
        fputs("steward init: --data DIR is required\n", stderr);
        return EXIT_USAGE;
    }
    if (stw_init(data, key, &err) != STW_OK) {
        print_error("init", &err);
        goto done;
    }
    out = cJSON_CreateObject();
    if (out == NULL || cJSON_AddStringToObject(out, "principal", "admin") == NULL ||
        cJSON_AddStringToObject(out, "api_key", key) == NULL)
        goto oom;
    line = cJSON_PrintUnformatted(out);
    if (line == NULL)
        goto oom;
    printf("%s\n", line);
    fflush(stdout);
    status = 0;
    goto done;
oom:
    fputs("steward init: out of memory (the store was created; run init on a new folder)\n",
          stderr);
done:
    if (line != NULL) {
        explicit_bzero(line, strlen(line));
        cJSON_free(line);
    }
    cJSON_Delete(out);
    explicit_bzero(key, sizeof key);
    return status;
}

/* ---- serve ------------------------------------------------------------------------------- */

/* Applies one configuration value from `source` ("--threads" or "STEWARD_THREADS").
 * Returns 0, or -1 after printing what was wrong. */
static int apply_setting(struct server_config *cfg, stw_options *opt, const char *key,
                         const char *source, const char *value)
{
    size_t v = 0;

    if (strcmp(key, "data") == 0) {
        cfg->data_dir = value;
    } else if (strcmp(key, "listen") == 0) {
        if (parse_listen(value, cfg) != 0) {
            fprintf(stderr, "steward serve: %s must be HOST:PORT (e.g. 127.0.0.1:8080)\n", source);
            return -1;
        }
    } else if (strcmp(key, "threads") == 0) {
        if (parse_size(value, 1, 256, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be an integer in 1..256\n", source);
            return -1;
        }
        cfg->threads = (unsigned)v;
    } else if (strcmp(key, "max-body") == 0) {
        if (parse_size(value, 1, (size_t)1 << 32, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a byte count in 1..4294967296\n", source);
            return -1;
        }
        cfg->max_body = v;
    } else if (strcmp(key, "max-header") == 0) {
        if (parse_size(value, STW_MIN_MAX_HEADER, STW_MAX_MAX_HEADER, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a byte count in %u..%u (4 KiB..1 MiB)\n",
                    source, STW_MIN_MAX_HEADER, STW_MAX_MAX_HEADER);
            return -1;
        }
        cfg->max_header = v;
    } else if (strcmp(key, "max-k") == 0) {
        if (parse_size(value, 1, 1000000, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be an integer in 1..1000000\n", source);
            return -1;
        }
        cfg->max_k = v;
    } else if (strcmp(key, "log-level") == 0) {
        int level = log_level_parse(value);

        if (level < 0) {
            fprintf(stderr, "steward serve: %s must be debug, info, warn or error\n", source);
            return -1;
        }
        cfg->log_level = level;
    } else if (strcmp(key, "strategy") == 0) {
        if (strcmp(value, "auto") == 0)
            opt->strategy = STW_STRATEGY_AUTO;
        else if (strcmp(value, "exact") == 0)
            opt->strategy = STW_STRATEGY_EXACT;
        else if (strcmp(value, "hnsw") == 0)
            opt->strategy = STW_STRATEGY_HNSW;
        else if (strcmp(value, "cells") == 0)
            opt->strategy = STW_STRATEGY_CELLS;
        else {
            fprintf(stderr, "steward serve: %s must be auto, exact, hnsw or cells\n", source);
            return -1;
        }
    } else if (strcmp(key, "hnsw-min-rows") == 0) {
        if (parse_size(value, 0, (size_t)1 << 32, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a row count (0: never build graphs)\n",
                    source);
            return -1;
        }
        opt->hnsw_min_rows = v;
    } else if (strcmp(key, "hnsw-ef") == 0) {
        if (parse_size(value, 1, 4096, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be an integer in 1..4096\n", source);
            return -1;
        }
        opt->hnsw_ef = v;
        if (opt->hnsw_ef_max < v)
            opt->hnsw_ef_max = v;
    } else if (strcmp(key, "exact-max-rows") == 0) {
        if (parse_size(value, 0, (size_t)1 << 32, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a row count\n", source);
            return -1;
        }
        opt->exact_max_rows = v;
    } else if (strcmp(key, "quantized-min-rows") == 0) {
        if (parse_size(value, 0, (size_t)1 << 32, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a row count\n", source);
            return -1;
        }
        opt->quantized_min_rows = v;
    } else if (strcmp(key, "binary-min-rows") == 0) {
        if (parse_size(value, 0, (size_t)1 << 32, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a row count\n", source);
            return -1;
        }
        opt->binary_min_rows = v;
    } else if (strcmp(key, "cells-max") == 0) {
        if (parse_size(value, 0, 1000000, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a cell count in 0..1000000 (0: none)\n",
                    source);
            return -1;
        }
        opt->cells_max = v;
    } else if (strcmp(key, "cells-min-share") == 0) {
        char *end = NULL;
        double share;
        errno = 0;
        share = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || !(share >= 0 && share <= 1)) {
            fprintf(stderr, "steward serve: %s must be a fraction in 0..1 (0: never)\n", source);
            return -1;
        }
        opt->cells_min_share = share;
    } else if (strcmp(key, "rows-memory-max") == 0) {
        if (parse_size(value, 0, (size_t)1 << 40, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a byte count in 0..1099511627776 (0: map "
                            "every rows file)\n", source);
            return -1;
        }
        opt->rows_memory_max = v;
    } else if (strcmp(key, "purpose-rule") == 0) {
        /* one rule per flag; the environment variable holds several, ';'-separated */
        char buf[1024], *part, *save = NULL;
        if (strlen(value) >= sizeof buf) {
            fprintf(stderr, "steward serve: %s is too long\n", source);
            return -1;
        }
        snprintf(buf, sizeof buf, "%s", value);
        for (part = strtok_r(buf, ";", &save); part != NULL; part = strtok_r(NULL, ";", &save))
            if (stw_purpose_rule_parse(opt, part) != 0) {
                fprintf(stderr,
                        "steward serve: %s must be PURPOSE:k=N,text=all|deidentified|none\n",
                        source);
                return -1;
            }
    } else if (strcmp(key, "walk-blocks") == 0) {
        if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
            fprintf(stderr, "steward serve: %s must be on or off\n", source);
            return -1;
        }
        opt->walk_blocks_off = strcmp(value, "off") == 0;
    } else if (strcmp(key, "audit-sync") == 0) {
        if (strcmp(value, "normal") != 0 && strcmp(value, "full") != 0) {
            fprintf(stderr, "steward serve: %s must be normal or full\n", source);
            return -1;
        }
        opt->audit_sync_full = strcmp(value, "full") == 0;
    } else if (strcmp(key, "request-timeout") == 0) {
        if (parse_size(value, 1, 86400, &v) != 0) {
            fprintf(stderr, "steward serve: %s must be a number of seconds in 1..86400\n", source);
            return -1;
        }
        cfg->request_timeout = (unsigned)v;
    }
    return 0;
}

static const struct {
    const char *key; /* setting name, also the flag without "--" */
    const char *env; /* environment variable */
} serve_settings[] = {
    {"data", "STEWARD_DATA"},       {"listen", "STEWARD_LISTEN"},
    {"threads", "STEWARD_THREADS"}, {"max-body", "STEWARD_MAX_BODY"},
    {"max-k", "STEWARD_MAX_K"},     {"log-level", "STEWARD_LOG_LEVEL"},
    {"strategy", "STEWARD_STRATEGY"},
    {"hnsw-min-rows", "STEWARD_HNSW_MIN_ROWS"},
    {"hnsw-ef", "STEWARD_HNSW_EF"},
    {"exact-max-rows", "STEWARD_EXACT_MAX_ROWS"},
    {"quantized-min-rows", "STEWARD_QUANTIZED_MIN_ROWS"},
    {"binary-min-rows", "STEWARD_BINARY_MIN_ROWS"},
    {"cells-max", "STEWARD_CELLS_MAX"},
    {"cells-min-share", "STEWARD_CELLS_MIN_SHARE"},
    {"rows-memory-max", "STEWARD_ROWS_MEMORY_MAX"},
    {"walk-blocks", "STEWARD_WALK_BLOCKS"},
    {"audit-sync", "STEWARD_AUDIT_SYNC"},
    {"purpose-rule", "STEWARD_PURPOSE_RULES"},
    {"request-timeout", "STEWARD_REQUEST_TIMEOUT"},
    {"max-header", "STEWARD_MAX_HEADER"},
};

#define NSETTINGS (sizeof serve_settings / sizeof serve_settings[0])

/* Applies the `key = value` lines of the configuration file at path (docs/config.md). */
static int apply_config_file(struct server_config *cfg, stw_options *opt, const char *path,
                             struct config_file *cf)
{
    char msg[512], source[512];
    size_t e, k;

    if (config_file_load(cf, path, msg, sizeof msg) != 0) {
        fprintf(stderr, "steward serve: config file %s\n", msg);
        return -1;
    }
    for (e = 0; e < cf->n; e++) {
        const struct config_entry *en = &cf->entries[e];

        for (k = 0; k < NSETTINGS && strcmp(serve_settings[k].key, en->key) != 0; k++) {
        }
        if (k == NSETTINGS) {
            fprintf(stderr, "steward serve: %s:%zu: unknown setting '%s'; known:", path, en->line,
                    en->key);
            for (k = 0; k < NSETTINGS; k++)
                fprintf(stderr, "%s %s", k > 0 ? "," : "", serve_settings[k].key);
            fputc('\n', stderr);
            return -1;
        }
        snprintf(source, sizeof source, "%s:%zu: %s", path, en->line, en->key);
        if (apply_setting(cfg, opt, en->key, source, en->value) != 0)
            return -1;
    }
    return 0;
}

/* Fills cfg and opt from the configuration file (--config FILE, else STEWARD_CONFIG), then the
 * STEWARD_* environment, then the flags: later layers win. cf receives the file, whose text
 * cfg->data_dir may borrow: release it only after the server has stopped.
 * Returns 0, or -1 after printing what was wrong (a usage error). */
static int serve_configure(int argc, char **argv, struct server_config *cfg, stw_options *opt,
                           struct config_file *cf)
{
    const char *path = getenv("STEWARD_CONFIG");
    size_t k;
    int i;

    for (i = 1; i < argc; i++) { /* find the file first: it is the lowest layer */
        const char *v = NULL;
        int r = take_flag(argc, argv, &i, "--config", &v);

        if (r < 0)
            return -1;
        if (r > 0)
            path = v;
    }
    if (path != NULL && path[0] != '\0' && apply_config_file(cfg, opt, path, cf) != 0)
        return -1;
    for (k = 0; k < NSETTINGS; k++) {
        const char *v = getenv(serve_settings[k].env);

        if (v != NULL && v[0] != '\0' &&
            apply_setting(cfg, opt, serve_settings[k].key, serve_settings[k].env, v) != 0)
            return -1;
    }
    for (i = 1; i < argc; i++) {
        const char *v = NULL;
        int matched = take_flag(argc, argv, &i, "--config", &v) > 0; /* applied above */

        for (k = 0; k < NSETTINGS && !matched; k++) {
            char flag[32];
            int r;

            snprintf(flag, sizeof flag, "--%s", serve_settings[k].key);
            r = take_flag(argc, argv, &i, flag, &v);
            if (r < 0)
                return -1;
            if (r > 0) {
                if (apply_setting(cfg, opt, serve_settings[k].key, flag, v) != 0)
                    return -1;
                matched = 1;
            }
        }
        if (!matched) {
            fprintf(stderr, "steward serve: unknown argument '%s'\n", argv[i]);
            usage();
            return -1;
        }
    }
    if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0') {
        fputs("steward serve: --data DIR (or STEWARD_DATA, or data = DIR in the config file) is"
              " required\n",
              stderr);
        return -1;
    }
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    struct server_config cfg;
    struct server srv;
    struct config_file cf;
    stw_options opt;
    stw_error err;
    sigset_t sigs;
    int sig = 0, status = 1, log_ready = 0;

    memset(&cf, 0, sizeof cf);
    memset(&cfg, 0, sizeof cfg);
    memset(&srv, 0, sizeof srv);
    memset(&err, 0, sizeof err);
    stw_options_default(&opt);
    snprintf(cfg.host, sizeof cfg.host, "127.0.0.1");
    cfg.port = 8080;
    cfg.threads = STW_DEFAULT_HTTP_THREADS;
    cfg.max_body = STW_DEFAULT_MAX_BODY;
    cfg.max_header = STW_DEFAULT_MAX_HEADER;
    cfg.max_k = opt.max_k > 0 ? opt.max_k : STW_DEFAULT_MAX_K;
    cfg.max_batch = opt.max_batch > 0 ? opt.max_batch : STW_DEFAULT_MAX_BATCH;
    cfg.max_dimension = opt.max_dimension > 0 ? opt.max_dimension : STW_DEFAULT_MAX_DIMENSION;
    cfg.log_level = STW_LOG_INFO;
    cfg.request_timeout = STW_DEFAULT_REQUEST_TIMEOUT;

    if (serve_configure(argc, argv, &cfg, &opt, &cf) != 0) {
        status = EXIT_USAGE;
        goto done;
    }
    opt.max_k = cfg.max_k;

    /* The handler first, so that from here on a stop is never lost; then the mask, before
     * any thread of ours exists, so that all of them inherit it. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (stop_signals_catch() != 0 || pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
        fputs("steward serve: cannot set up signal handling\n", stderr);
        goto done;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that hangs up must not kill the server */

    if (log_init(&srv.log, stderr, cfg.log_level) != 0) {
        fputs("steward serve: cannot set up logging\n", stderr);
        goto done;
    }
    log_ready = 1;
    if (stw_open(cfg.data_dir, &opt, &srv.db, &err) != STW_OK) {
        print_error("serve", &err);
        goto done;
    }
    srv.cfg = &cfg;
    if (http_start(&srv, &err) != STW_OK) {
        print_error("serve", &err);
        goto done;
    }
    printf(strchr(cfg.host, ':') != NULL ? "listening on http://[%s]:%u\n"
                                         : "listening on http://%s:%u\n",
           cfg.host, (unsigned)srv.port);
    fflush(stdout);
    log_msg(&srv.log, STW_LOG_INFO,
            "event=start port=%u threads=%u max_body=%zu max_k=%zu max_batch=%zu max_header=%zu",
            srv.port, cfg.threads, cfg.max_body, cfg.max_k, cfg.max_batch, cfg.max_header);

    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL); /* main may run the handler now */
    sig = stop_signal_wait();
    log_msg(&srv.log, STW_LOG_INFO, "event=stop signal=%s drain_ms=%u",
            sig == SIGINT ? "SIGINT" : "SIGTERM", DRAIN_MS);
    http_stop(&srv, DRAIN_MS);
    log_msg(&srv.log, STW_LOG_INFO, "event=stopped");
    status = 0;
done:
    http_stop(&srv, 0); /* no-op once stopped */
    stw_close(srv.db);
    if (log_ready)
        log_release(&srv.log);
    config_file_release(&cf); /* last: cfg.data_dir may point into it */
    return status;
}

/* ---- audit: head, verify, export --------------------------------------------------------- */

/* stw_emit_fn writing one NDJSON line to the FILE in ctx; non-zero stops the export. */
static int emit_line(void *ctx, const char *line)
{
    FILE *f = ctx;
    return fputs(line, f) < 0 || fputc('\n', f) == EOF;
}

static int cmd_audit(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "", *data = getenv("STEWARD_DATA");
    const char *head = NULL, *events = NULL, *format = NULL, *since = NULL, *until = NULL;
    char what[32];
    stw_principal cli;
    stw_audit_pin pin;
    stw_db *db = NULL;
    stw_error err;
    char *json = NULL;
    cJSON *parsed = NULL;
    int64_t since_ms = STW_TIME_NONE, until_ms = STW_TIME_NONE;
    size_t nevents = 0;
    int status = 1, i;
    int is_verify = strcmp(sub, "verify") == 0, is_export = strcmp(sub, "export") == 0;

    memset(&cli, 0, sizeof cli);
    memset(&pin, 0, sizeof pin);
    memset(&err, 0, sizeof err);
    if (!is_verify && !is_export && strcmp(sub, "head") != 0) {
        fputs("steward audit: subcommands are head, verify and export (see steward help)\n",
              stderr);
        return EXIT_USAGE;
    }
    snprintf(what, sizeof what, "audit %s", sub);
    for (i = 2; i < argc; i++) {
        int r = take_flag(argc, argv, &i, "--data", &data);

        if (r == 0 && is_verify)
            r = take_flag(argc, argv, &i, "--head", &head);
        if (r == 0 && is_verify)
            r = take_flag(argc, argv, &i, "--events", &events);
        if (r == 0 && is_export)
            r = take_flag(argc, argv, &i, "--format", &format);
        if (r == 0 && is_export)
            r = take_flag(argc, argv, &i, "--since", &since);
        if (r == 0 && is_export)
            r = take_flag(argc, argv, &i, "--until", &until);
        if (r < 0)
            return EXIT_USAGE;
        if (r == 0) {
            fprintf(stderr, "steward %s: unknown argument '%s'\n", what, argv[i]);
            return EXIT_USAGE;
        }
    }
    if (data == NULL || data[0] == '\0') {
        fprintf(stderr, "steward %s: --data DIR is required\n", what);
        return EXIT_USAGE;
    }
    if ((head == NULL) != (events == NULL)) {
        fputs("steward audit verify: --head and --events go together (from 'steward audit"
              " head')\n",
              stderr);
        return EXIT_USAGE;
    }
    if (events != NULL && (parse_size(events, 1, (size_t)INT64_MAX, &nevents) != 0 ||
                           strlen(head) >= sizeof pin.head)) {
        fputs("steward audit verify: --events must be a count >= 1 and --head a sha256:... hash\n",
              stderr);
        return EXIT_USAGE;
    }
    if (is_export && (format == NULL || strcmp(format, "fhir") != 0)) {
        fputs("steward audit export: --format fhir is required (the only format)\n", stderr);
        return EXIT_USAGE;
    }
    if ((since != NULL && stw_time_parse(since, &since_ms) != 0) ||
        (until != NULL && stw_time_parse(until, &until_ms) != 0)) {
        fputs("steward audit export: --since and --until take RFC 3339 times"
              " (2026-01-31T00:00:00Z)\n",
              stderr);
        return EXIT_USAGE;
    }
    if (stw_open(data, NULL, &db, &err) != STW_OK) {
        print_error(what, &err);
        goto done;
    }
    /* Whoever can read the data folder can read the chain: act as a synthetic admin. */
    snprintf(cli.id, sizeof cli.id, "cli");
    cli.roles = STW_ROLE_ADMIN;
    if (is_export) {
        stw_code xrc = stw_audit_export_fhir(db, &cli, since_ms, until_ms, emit_line, stdout, &err);

        if (xrc == STW_OK && fflush(stdout) != 0)
            xrc = stw_errorf(&err, STW_UNAVAILABLE, "output_failed", "cannot write the export: %s",
                             strerror(errno));
        if (xrc != STW_OK) {
            print_error(what, &err);
            goto done;
        }
        status = 0;
        goto done;
    }
    if (events != NULL) {
        pin.events = (int64_t)nevents;
        snprintf(pin.head, sizeof pin.head, "%s", head);
    }
    if ((is_verify ? stw_audit_verify_pinned(db, &cli, events != NULL ? &pin : NULL, &json, &err)
                   : stw_audit_head(db, &cli, &json, &err)) != STW_OK) {
        print_error(what, &err);
        goto done;
    }
    printf("%s\n", json);
    fflush(stdout);
    parsed = cJSON_Parse(json);
    status = !is_verify || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(parsed, "ok")) ? 0 : 1;
done:
    cJSON_Delete(parsed);
    free(json);
    stw_close(db);
    return status;
}

/* ---- verify-version ---------------------------------------------------------------------- */

static int cmd_verify_version(int argc, char **argv)
{
    const char *data = getenv("STEWARD_DATA"), *product = NULL, *version = NULL;
    stw_principal cli;
    stw_db *db = NULL;
    stw_error err;
    char *json = NULL;
    int status = 1, ok = 0, i;

    memset(&cli, 0, sizeof cli);
    memset(&err, 0, sizeof err);
    for (i = 1; i < argc; i++) {
        int r = take_flag(argc, argv, &i, "--data", &data);

        if (r == 0)
            r = take_flag(argc, argv, &i, "--product", &product);
        if (r == 0)
            r = take_flag(argc, argv, &i, "--version", &version);
        if (r < 0)
            return EXIT_USAGE;
        if (r == 0) {
            fprintf(stderr, "steward verify-version: unknown argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (data == NULL || data[0] == '\0' || product == NULL || version == NULL) {
        fputs("steward verify-version: --data DIR, --product P and --version V are required\n",
              stderr);
        return EXIT_USAGE;
    }
    if (stw_open(data, NULL, &db, &err) != STW_OK) {
        print_error("verify-version", &err);
        goto done;
    }
    /* Whoever can read the data folder can read the version: act as a synthetic admin. */
    snprintf(cli.id, sizeof cli.id, "cli");
    cli.roles = STW_ROLE_ADMIN;
    if (stw_version_verify(db, &cli, product, version, &json, &ok, &err) != STW_OK) {
        print_error("verify-version", &err);
        goto done;
    }
    printf("%s\n", json);
    fflush(stdout);
    status = ok ? 0 : 1;
done:
    free(json);
    stw_close(db);
    return status;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    /* Everything steward creates holds clinical data or keys (steward.db, its WAL, version
     * files, the demo's files): owner-only, whatever the caller's umask and however the data
     * folder was created. */
    umask(077);

    if (cmd == NULL) {
        usage();
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "init") == 0)
        return cmd_init(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return demo_main(argc - 1, argv + 1);
    if (strcmp(cmd, "audit") == 0)
        return cmd_audit(argc - 1, argv + 1);
    if (strcmp(cmd, "ingest") == 0)
        return ingest_main(argc - 1, argv + 1);
    if (strcmp(cmd, "verify-version") == 0)
        return cmd_verify_version(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(); /* asked for: not an error */
        return 0;
    }
    fprintf(stderr, "steward: unknown command '%s'\n", cmd);
    usage();
    return EXIT_USAGE;
}
