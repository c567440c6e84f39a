/* http.h - the HTTP face of Steward: libmicrohttpd routes over the stw_* core API.
 *
 * The contract is docs/api.md (../shared/design/api.md): routes, status codes and the error body
 * {"error":{"code":"<snake_case>","message":"..."}}. This module authenticates the bearer key,
 * caps and parses bodies (json.c), calls one stw_* function per route, maps stw_code to a
 * status in one switch, and writes one access-log line per request. It holds no state of its
 * own beyond the server context below. Only main.c and http.c include this header.
 */
#ifndef STW_HTTP_H
#define STW_HTTP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "steward.h"

struct MHD_Daemon;
struct http_metrics; /* private to http.c */

/* Everything configurable about serving; filled by main.c from flags, env, the config file and
 * defaults and then read-only. */
struct server_config {
    const char *data_dir;     /* borrowed: argv, environ or the config file's text */
    char host[256];           /* listen address: IPv4, IPv6 (no brackets) or a host name */
    uint16_t port;            /* 0 picks a free port */
    unsigned threads;         /* libmicrohttpd polling threads, >= 1 */
    size_t max_body;          /* request body bytes; more is 413 body_too_large */
    size_t max_header;        /* request line + headers; more is 431 headers_too_large */
    size_t max_k;             /* largest k a query may ask for */
    size_t max_batch;         /* chunks per POST .../chunks */
    size_t max_dimension;     /* largest contract dimension */
    int log_level;            /* enum log_level */
    unsigned request_timeout; /* seconds a connection may stay idle, also mid-request */
};

/* The one object that outlives a request; passed to libmicrohttpd as the handler's cls.
 * main.c sets cfg, db and log (log_init) before http_start and releases them after http_stop.
 * Thread: handlers on every polling thread read cfg and db and write the logger (which locks
 * itself) and the atomics; nothing else is written after http_start returns. */
struct server {
    const struct server_config *cfg; /* borrowed, read-only */
    stw_db *db;                      /* borrowed; closed by main after http_stop */
    struct logger log;
    struct MHD_Daemon *mhd;       /* owned: started by http_start, stopped by http_stop */
    uint16_t port;                /* the bound port, set by http_start */
    struct http_metrics *metrics; /* owned by http_start/http_stop; counters are atomics */
    atomic_size_t inflight;       /* requests begun and not yet completed */
    atomic_int stopping;          /* 1 once http_stop began: responses say Connection: close */
};

/* Binds cfg->host:cfg->port and starts the polling threads. On success srv->mhd and srv->port
 * are set. STW_INVALID (bad listen address) or STW_INTERNAL (bind/start failed) with *err.
 * Thread: main thread, once. */
stw_code http_start(struct server *srv, stw_error *err);

/* Stops accepting connections, waits up to drain_ms for requests in progress to finish, then
 * stops the daemon and frees what http_start made. Safe on a server that never started.
 * Thread: main thread, once, after http_start. */
void http_stop(struct server *srv, unsigned drain_ms);

/* The route table, for tests/test_openapi.c (which checks it against docs/openapi.yaml).
 * http_route_at sets method ("GET", "POST", "DELETE"), pattern ("/v1/products/{p}") and auth
 * (1: needs a bearer key) for route i and returns 0, or -1 when i >= http_route_count().
 * Borrowed: static storage. Thread: any. */
size_t http_route_count(void);
int http_route_at(size_t i, const char **method, const char **pattern, int *auth);

#endif
