/* http.c - libmicrohttpd routes over the stw_* core (see http.h and docs/api.md).
 *
 * One request, in libmicrohttpd's three-call pattern:
 *   1. headers only (*con_cls == NULL): allocate struct request, check the headers' size
 *      against --max-header, match the route, authenticate /v1/ calls, check Content-Length
 *      against the body cap. An error found here is kept in req->early and sent only after the
 *      body has been drained: answering before a client has finished sending makes the kernel
 *      reset the connection, and the client may never read the answer. (Exceptions: the client
 *      asked "Expect: 100-continue", so it waits; or the announced body is beyond what we are
 *      willing to drain.)
 *   2. body pieces: appended up to the cap, counted (also for chunked uploads) and discarded
 *      beyond it.
 *   3. end of body: parse, call the core, queue exactly one response.
 * MHD_OPTION_NOTIFY_COMPLETED frees the request whatever happened, writes the access-log line
 * and counts the request in the metrics.
 *
 * Invariants: every response is JSON (metrics: Prometheus text) and goes through send_reply;
 * every error goes through send_error, so each is shaped, counted and logged the same way;
 * stw_code becomes an HTTP status only in http_status_for. Paths are matched segment by
 * segment against the route table before percent-decoding, so "%2F" inside a product name
 * can never change which route runs. Nothing here logs a body, an API key or chunk text.
 */
#include "http.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "limits.h"
#include "openapi.h"

#define HTTP_CONN_LIMIT   1024u
#define HTTP_MAX_SEGMENTS 8
#define HTTP_MAX_PARAMS   2
#define HTTP_PARAM_MAX    (STW_ID_MAX + 1)
/* The connection's memory pool is --max-header plus this: room for the read buffer and the
 * response headers once the request's own headers have used up their whole budget. */
#define HTTP_CONN_RESERVE ((size_t)4 * 1024)
/* What libmicrohttpd keeps per header besides its text (one struct MHD_HTTP_Header, aligned). */
#define HTTP_HEADER_OVERHEAD ((size_t)64)
/* Beyond the cap we still read (and drop) this much more, so that the client reads a clean 413
 * instead of a reset; past that we cut the connection. */
#define HTTP_DRAIN_EXTRA ((size_t)64 * 1024 * 1024)
#define HTTP_ARG_MAX     (STW_ID_MAX + 1)

static const char json_type[] = "application/json";
static const char metrics_type[] = "text/plain; version=0.0.4; charset=utf-8";
static const char yaml_type[] = "application/yaml";

/* ---- per-request state ------------------------------------------------------------------ */

struct route;

/* Lives from the first handler call until NOTIFY_COMPLETED; touched by one thread at a time
 * (libmicrohttpd serves a connection on one polling thread). */
struct request {
    struct server *srv;                           /* borrowed */
    struct MHD_Connection *conn;                  /* borrowed, valid until completion */
    const struct route *route;                    /* NULL: no route matched */
    char method[8];                               /* for the log: "GET", ..., "OTHER" */
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX]; /* decoded {captures} of the path */
    char allow[32];                               /* Allow header value for a 405 */
    stw_principal caller;                         /* valid when authenticated */
    int authenticated;
    int has_early; /* early holds an error to send once the body is drained */
    stw_error early;
    int too_large; /* the body went over the cap: it is being discarded */
    char *body;    /* owned; NUL-terminated; len bytes */
    size_t len, cap;
    size_t received; /* body bytes seen, kept or dropped */
    unsigned status; /* 0 until a response is queued */
    char query_id[STW_QUERY_ID_MAX];
    char err_name[STW_ERR_NAME_MAX]; /* error code sent, for the log */
    struct timespec t0;
};

/* What a route handler produces on success. Exactly one of json/raw/text/yaml is set. */
struct reply {
    unsigned status;
    cJSON *json;      /* owned: cJSON_Delete */
    char *raw;        /* owned: free(); JSON text made by the core, sent as-is */
    char *text;       /* owned: free(); text/plain body (metrics) */
    const char *yaml; /* static storage: the built-in OpenAPI document */
    size_t yaml_len;
};

typedef stw_code (*route_fn)(struct request *req, struct reply *rep, stw_error *err);

struct route {
    const char *method;  /* "GET", "POST" or "DELETE" (HEAD is served as GET) */
    const char *pattern; /* literal segments and {captures}; also the metrics/log label */
    int auth;            /* 1: needs Authorization: Bearer <key> */
    route_fn fn;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes of s into dst (cap bytes including the NUL). Returns 0, or -1 for a
 * broken escape, an encoded NUL or a result that does not fit. */
static int pct_decode(const char *s, size_t n, char *dst, size_t cap)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        char c = s[i];

        if (c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(s[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        dst[o++] = c;
    }
    dst[o] = '\0';
    return 0;
}

/* ---- status mapping and replies --------------------------------------------------------- */

static unsigned http_status_for(const stw_error *err)
{
    switch (err->code) { /* no default: a new code must be mapped here */
    case STW_OK: return MHD_HTTP_OK;
    case STW_INVALID: return MHD_HTTP_BAD_REQUEST;
    case STW_UNAUTHENTICATED: return MHD_HTTP_UNAUTHORIZED;
    case STW_FORBIDDEN: return MHD_HTTP_FORBIDDEN;
    case STW_NOT_FOUND: return MHD_HTTP_NOT_FOUND;
    case STW_METHOD: return MHD_HTTP_METHOD_NOT_ALLOWED;
    case STW_CONFLICT: return MHD_HTTP_CONFLICT;
    case STW_GONE: return MHD_HTTP_GONE;
    case STW_TOO_LARGE: /* the headers have their own status; everything else is the body */
        return strcmp(err->name, "headers_too_large") == 0
                   ? MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE
                   : MHD_HTTP_CONTENT_TOO_LARGE;
    case STW_UNPROCESSABLE: return MHD_HTTP_UNPROCESSABLE_CONTENT;
    case STW_UNAVAILABLE:
    case STW_NOMEM: return MHD_HTTP_SERVICE_UNAVAILABLE;
    case STW_STORE:
    case STW_INDEX:
    case STW_INTERNAL: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

/* Queues one response. body is owned and released with free_fn (NULL: static storage).
 * extra_name/extra_value add one more header (Allow, WWW-Authenticate), may be NULL. */
static enum MHD_Result send_reply(struct request *req, unsigned status, const char *ctype,
                                  char *body, size_t len, MHD_ContentReaderFreeCallback free_fn,
                                  const char *extra_name, const char *extra_value)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (free_fn != NULL)
        resp = MHD_create_response_from_buffer_with_free_callback(len, body, free_fn);
    else
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        if (free_fn != NULL)
            free_fn(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    /* Answers may carry PHI: no shared cache may keep them. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (extra_name != NULL && extra_value != NULL)
        MHD_add_response_header(resp, extra_name, extra_value);
    if (atomic_load(&req->srv->stopping))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES)
        req->status = status;
    return ret;
}

static void free_cjson_text(void *p)
{
    cJSON_free(p);
}

static enum MHD_Result send_json(struct request *req, unsigned status, const cJSON *j)
{
    static char oom[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}";
    char *text = cJSON_PrintUnformatted(j);

    if (text == NULL) {
        snprintf(req->err_name, sizeof req->err_name, "out_of_memory");
        return send_reply(req, MHD_HTTP_SERVICE_UNAVAILABLE, json_type, oom, strlen(oom), NULL,
                          NULL, NULL);
    }
    return send_reply(req, status, json_type, text, strlen(text), free_cjson_text, NULL, NULL);
}

/* The one way an error leaves: {"error":{"code","message"[,"problems"]}} with its status. */
static enum MHD_Result send_error(struct request *req, const stw_error *err)
{
    static char oom[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}";
    unsigned status = http_status_for(err);
    const char *hname = NULL, *hvalue = NULL;
    cJSON *j;
    enum MHD_Result ret;

    if (err->code == STW_OK) /* a handler bug: never answer an error with 200 */
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    snprintf(req->err_name, sizeof req->err_name, "%s",
             err->name[0] != '\0' ? err->name : stw_code_name(err->code));
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        hname = MHD_HTTP_HEADER_ALLOW;
        hvalue = req->allow;
    } else if (status == MHD_HTTP_UNAUTHORIZED) {
        hname = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
        hvalue = "Bearer";
    }
    j = json_render_error(err);
    if (j == NULL)
        return send_reply(req, MHD_HTTP_SERVICE_UNAVAILABLE, json_type, oom, strlen(oom), NULL,
                          NULL, NULL);
    {
        char *text = cJSON_PrintUnformatted(j);

        cJSON_Delete(j);
        if (text == NULL)
            return send_reply(req, MHD_HTTP_SERVICE_UNAVAILABLE, json_type, oom, strlen(oom), NULL,
                              NULL, NULL);
        ret =
            send_reply(req, status, json_type, text, strlen(text), free_cjson_text, hname, hvalue);
    }
    return ret;
}

static enum MHD_Result send_result(struct request *req, struct reply *rep)
{
    enum MHD_Result ret;

    if (rep->raw != NULL) {
        ret = send_reply(req, rep->status, json_type, rep->raw, strlen(rep->raw), free, NULL, NULL);
        rep->raw = NULL;
    } else if (rep->text != NULL) {
        ret = send_reply(req, rep->status, metrics_type, rep->text, strlen(rep->text), free, NULL,
                         NULL);
        rep->text = NULL;
    } else if (rep->yaml != NULL) {
        /* MHD_RESPMEM_PERSISTENT only reads the buffer: casting const away is safe here. */
        ret = send_reply(req, rep->status, yaml_type, (char *)rep->yaml, rep->yaml_len, NULL, NULL,
                         NULL);
    } else {
        ret = send_json(req, rep->status, rep->json);
    }
    return ret;
}

static void reply_release(struct reply *rep)
{
    cJSON_Delete(rep->json);
    free(rep->raw);
    free(rep->text);
    memset(rep, 0, sizeof *rep);
}

/* Takes j (may be NULL: out of memory). */
static stw_code reply_json(struct reply *rep, unsigned status, cJSON *j, stw_error *err)
{
    if (j == NULL)
        return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
    rep->status = status;
    rep->json = j;
    return STW_OK;
}

/* Takes text (owned, free()). */
static stw_code reply_raw(struct reply *rep, unsigned status, char *text, stw_error *err)
{
    if (text == NULL)
        return stw_errorf(err, STW_INTERNAL, "internal", "the core returned no JSON");
    rep->status = status;
    rep->raw = text;
    return STW_OK;
}

/* ---- query-string arguments ------------------------------------------------------------- */

/* The decoded value of ?name= into dst; *present 0 when absent or empty. */
static stw_code arg_get(const struct request *req, const char *name, char *dst, size_t cap,
                        int *present, stw_error *err)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);

    *present = 0;
    dst[0] = '\0';
    if (v == NULL || v[0] == '\0')
        return STW_OK;
    if (pct_decode(v, strlen(v), dst, cap) != 0)
        return stw_errorf(err, STW_INVALID, "invalid_value",
                          "query parameter %s is badly encoded or longer than %zu bytes", name,
                          cap - 1);
    *present = 1;
    return STW_OK;
}

/* ?name= as RFC 3339, STW_TIME_NONE when absent. */
static stw_code arg_time(const struct request *req, const char *name, int64_t *out, stw_error *err)
{
    char v[64];
    int present = 0;
    int64_t ms = 0;
    stw_code rc;

    *out = STW_TIME_NONE;
    rc = arg_get(req, name, v, sizeof v, &present, err);
    if (rc != STW_OK || !present)
        return rc;
    if (stw_time_parse(v, &ms) != 0) {
        /* An unencoded "+02:00" offset arrives as " 02:00" (form encoding): put it back. */
        char *sp = strchr(v, ' ');

        if (sp != NULL)
            *sp = '+';
        if (sp == NULL || stw_time_parse(v, &ms) != 0)
            return stw_errorf(err, STW_INVALID, "invalid_time",
                              "query parameter %s is not an RFC 3339 time", name);
    }
    *out = ms;
    return STW_OK;
}

/* ?name= as a decimal integer in lo..hi, dflt when absent. */
static stw_code arg_int(const struct request *req, const char *name, int64_t lo, int64_t hi,
                        int64_t dflt, int64_t *out, stw_error *err)
{
    char v[32];
    int present = 0;
    char *end = NULL;
    long long x;
    stw_code rc;

    *out = dflt;
    rc = arg_get(req, name, v, sizeof v, &present, err);
    if (rc != STW_OK || !present)
        return rc;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || end == v || *end != '\0' || errno != 0 || x < lo || x > hi)
        return stw_errorf(err, STW_INVALID, "out_of_range",
                          "query parameter %s must be an integer in %" PRId64 "..%" PRId64, name,
                          lo, hi);
    *out = (int64_t)x;
    return STW_OK;
}

/* ---- body ------------------------------------------------------------------------------- */

static stw_code body_parse(const struct request *req, cJSON **out, stw_error *err)
{
    return json_parse_body(req->body, req->len, out, err);
}

/* ---- route handlers --------------------------------------------------------------------- */

static stw_code h_healthz(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *j = cJSON_CreateObject();

    (void)req;
    if (j != NULL && cJSON_AddStringToObject(j, "status", "ok") == NULL) {
        cJSON_Delete(j);
        j = NULL;
    }
    return reply_json(rep, MHD_HTTP_OK, j, err);
}

static stw_code h_metrics(struct request *req, struct reply *rep, stw_error *err);
struct http_metrics;
static void metrics_query(struct http_metrics *m, const stw_answer *a, double ms);
static void metrics_ingest(struct http_metrics *m, size_t accepted, size_t unchanged,
                           int published);

static stw_code h_openapi(struct request *req, struct reply *rep, stw_error *err)
{
    (void)req;
    (void)err;
    rep->status = MHD_HTTP_OK;
    rep->yaml = (const char *)openapi_yaml;
    rep->yaml_len = openapi_yaml_len;
    return STW_OK;
}

static stw_code h_principal_create(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *body = NULL;
    stw_principal p;
    char key[STW_KEY_MAX];
    stw_code rc;

    memset(key, 0, sizeof key);
    rc = body_parse(req, &body, err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_principal(body, &p, err);
    if (rc != STW_OK)
        goto done;
    rc = stw_principal_create(req->srv->db, &req->caller, &p, key, err);
    if (rc != STW_OK)
        goto done;
    rc = reply_json(rep, MHD_HTTP_CREATED, json_render_principal(&p, key), err);
done:
    explicit_bzero(key, sizeof key);
    cJSON_Delete(body);
    return rc;
}

/* {"id":id,"policy_version":v} (id omitted when NULL). */
static cJSON *policy_change(const char *id, int64_t policy_version)
{
    cJSON *j = cJSON_CreateObject();

    if (j == NULL)
        return NULL;
    if ((id != NULL && cJSON_AddStringToObject(j, "id", id) == NULL) ||
        cJSON_AddNumberToObject(j, "policy_version", (double)policy_version) == NULL) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static stw_code h_grant_create(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *body = NULL;
    stw_grant g;
    int64_t pv = 0;
    stw_code rc;

    rc = body_parse(req, &body, err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_grant(body, &g, err);
    if (rc != STW_OK)
        goto done;
    rc = stw_grant_create(req->srv->db, &req->caller, &g, &pv, err);
    if (rc != STW_OK)
        goto done;
    rc = reply_json(rep, MHD_HTTP_CREATED, policy_change(g.id, pv), err);
done:
    cJSON_Delete(body);
    return rc;
}

static stw_code h_grant_revoke(struct request *req, struct reply *rep, stw_error *err)
{
    int64_t pv = 0;
    stw_code rc;

    rc = stw_grant_revoke(req->srv->db, &req->caller, req->params[0], &pv, err);
    if (rc != STW_OK)
        return rc;
    return reply_json(rep, MHD_HTTP_OK, policy_change(NULL, pv), err);
}

static stw_code h_suppression_create(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *body = NULL;
    stw_suppression s;
    int64_t pv = 0;
    stw_code rc;

    rc = body_parse(req, &body, err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_suppression(body, &s, err);
    if (rc != STW_OK)
        goto done;
    rc = stw_suppression_create(req->srv->db, &req->caller, &s, &pv, err);
    if (rc != STW_OK)
        goto done;
    rc = reply_json(rep, MHD_HTTP_CREATED, policy_change(s.id, pv), err);
done:
    cJSON_Delete(body);
    return rc;
}

static stw_code h_suppression_lift(struct request *req, struct reply *rep, stw_error *err)
{
    int64_t pv = 0;
    stw_code rc;

    rc = stw_suppression_lift(req->srv->db, &req->caller, req->params[0], &pv, err);
    if (rc != STW_OK)
        return rc;
    return reply_json(rep, MHD_HTTP_OK, policy_change(NULL, pv), err);
}

static stw_code h_policy_get(struct request *req, struct reply *rep, stw_error *err)
{
    stw_policy *p = NULL;
    stw_code rc;

    rc = stw_policy_get(req->srv->db, &req->caller, &p, err);
    if (rc != STW_OK)
        return rc;
    rc = reply_json(rep, MHD_HTTP_OK, json_render_policy(p), err);
    stw_policy_free(p);
    return rc;
}

static stw_code h_product_create(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *body = NULL;
    stw_product p;
    stw_product *stored = NULL;
    stw_error ignored;
    stw_code rc;

    rc = body_parse(req, &body, err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_product(body, req->srv->cfg->max_dimension, &p, err);
    if (rc != STW_OK)
        goto done;
    rc = stw_product_create(req->srv->db, &req->caller, &p, err);
    if (rc != STW_OK)
        goto done;
    /* Answer with what was stored (created_at, summary); fall back to what was sent. */
    if (stw_product_get(req->srv->db, &req->caller, p.name, &stored, &ignored) != STW_OK)
        stored = NULL;
    rc = reply_json(rep, MHD_HTTP_CREATED, json_render_product(stored != NULL ? stored : &p), err);
done:
    stw_products_free(stored, 1);
    cJSON_Delete(body);
    return rc;
}

static stw_code h_product_list(struct request *req, struct reply *rep, stw_error *err)
{
    stw_product *list = NULL;
    size_t n = 0, i;
    cJSON *j = NULL, *arr;
    stw_code rc;

    rc = stw_product_list(req->srv->db, &req->caller, &list, &n, err);
    if (rc != STW_OK)
        return rc;
    j = cJSON_CreateObject();
    arr = j != NULL ? cJSON_AddArrayToObject(j, "products") : NULL;
    for (i = 0; arr != NULL && i < n; i++) {
        cJSON *p = json_render_product(&list[i]);

        if (p == NULL || !cJSON_AddItemToArray(arr, p)) {
            cJSON_Delete(p);
            arr = NULL;
        }
    }
    if (arr == NULL) {
        cJSON_Delete(j);
        j = NULL;
    }
    stw_products_free(list, n);
    return reply_json(rep, MHD_HTTP_OK, j, err);
}

static stw_code h_product_get(struct request *req, struct reply *rep, stw_error *err)
{
    stw_product *p = NULL;
    stw_code rc;

    rc = stw_product_get(req->srv->db, &req->caller, req->params[0], &p, err);
    if (rc != STW_OK)
        return rc;
    rc = reply_json(rep, MHD_HTTP_OK, json_render_product(p), err);
    stw_products_free(p, 1);
    return rc;
}

static stw_code h_version_create(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *body = NULL;
    char name[STW_NAME_MAX + 1];
    stw_version_info info;
    stw_code rc;

    memset(&info, 0, sizeof info);
    rc = body_parse(req, &body, err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_version_create(body, name, err);
    if (rc != STW_OK)
        goto done;
    rc = stw_version_create(req->srv->db, &req->caller, req->params[0], name, &info, err);
    if (rc != STW_OK)
        goto done;
    rc = reply_json(rep, MHD_HTTP_CREATED, json_render_version(&info), err);
done:
    cJSON_Delete(body);
    return rc;
}

static stw_code h_version_list(struct request *req, struct reply *rep, stw_error *err)
{
    stw_version_info *list = NULL;
    size_t n = 0, i;
    cJSON *j = NULL, *arr;
    stw_code rc;

    rc = stw_version_list(req->srv->db, &req->caller, req->params[0], &list, &n, err);
    if (rc != STW_OK)
        return rc;
    j = cJSON_CreateObject();
    arr = j != NULL ? cJSON_AddArrayToObject(j, "versions") : NULL;
    for (i = 0; arr != NULL && i < n; i++) {
        cJSON *v = json_render_version(&list[i]);

        if (v == NULL || !cJSON_AddItemToArray(arr, v)) {
            cJSON_Delete(v);
            arr = NULL;
        }
    }
    if (arr == NULL) {
        cJSON_Delete(j);
        j = NULL;
    }
    free(list);
    return reply_json(rep, MHD_HTTP_OK, j, err);
}

static stw_code h_version_get(struct request *req, struct reply *rep, stw_error *err)
{
    stw_version_info info;
    stw_code rc;

    memset(&info, 0, sizeof info);
    rc = stw_version_get(req->srv->db, &req->caller, req->params[0], req->params[1], &info, err);
    if (rc != STW_OK)
        return rc;
    return reply_json(rep, MHD_HTTP_OK, json_render_version(&info), err);
}

static stw_code h_chunks_add(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *body = NULL, *j = NULL;
    struct json_chunk_batch batch;
    size_t accepted = 0, unchanged = 0;
    stw_code rc;

    memset(&batch, 0, sizeof batch);
    rc = body_parse(req, &body, err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_chunk_batch(body, req->srv->cfg->max_batch, &batch, err);
    if (rc != STW_OK)
        goto done;
    rc = stw_chunks_add(req->srv->db, &req->caller, req->params[0], req->params[1], batch.chunks,
                        batch.n, &accepted, &unchanged, err);
    if (rc != STW_OK)
        goto done;
    metrics_ingest(req->srv->metrics, accepted, unchanged, 0);
    j = cJSON_CreateObject();
    if (j != NULL && (cJSON_AddNumberToObject(j, "accepted", (double)accepted) == NULL ||
                      cJSON_AddNumberToObject(j, "unchanged", (double)unchanged) == NULL)) {
        cJSON_Delete(j);
        j = NULL;
    }
    rc = reply_json(rep, MHD_HTTP_OK, j, err);
done:
    json_chunk_batch_release(&batch);
    cJSON_Delete(body);
    return rc;
}

static stw_code h_version_publish(struct request *req, struct reply *rep, stw_error *err)
{
    stw_version_info info;
    stw_code rc;

    memset(&info, 0, sizeof info);
    rc =
        stw_version_publish(req->srv->db, &req->caller, req->params[0], req->params[1], &info, err);
    if (rc != STW_OK)
        return rc;
    metrics_ingest(req->srv->metrics, 0, 0, 1);
    return reply_json(rep, MHD_HTTP_OK, json_render_version(&info), err);
}

static stw_code h_version_retire(struct request *req, struct reply *rep, stw_error *err)
{
    stw_version_info info;
    stw_code rc;

    memset(&info, 0, sizeof info);
    rc = stw_version_retire(req->srv->db, &req->caller, req->params[0], req->params[1], &info, err);
    if (rc != STW_OK)
        return rc;
    return reply_json(rep, MHD_HTTP_OK, json_render_version(&info), err);
}

static stw_code h_query(struct request *req, struct reply *rep, stw_error *err)
{
    cJSON *body = NULL;
    stw_query q;
    struct json_query_hold hold;
    stw_answer *a = NULL;
    stw_code rc;

    memset(&hold, 0, sizeof hold);
    rc = body_parse(req, &body, err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_query(body, req->srv->cfg->max_k, &q, &hold, err);
    if (rc != STW_OK)
        goto done;
    {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = stw_query_run(req->srv->db, &req->caller, &q, &a, err);
        if (rc != STW_OK)
            goto done;
        metrics_query(req->srv->metrics, a, elapsed_ms(&t0));
    }
    snprintf(req->query_id, sizeof req->query_id, "%s", a->query_id);
    rc = reply_json(rep, MHD_HTTP_OK, json_render_answer(a, q.explain, err), err);
done:
    stw_answer_free(a);
    json_query_hold_release(&hold);
    cJSON_Delete(body);
    return rc;
}

static stw_code h_audit_query(struct request *req, struct reply *rep, stw_error *err)
{
    char *json = NULL;
    stw_code rc;

    rc = stw_audit_query_get(req->srv->db, &req->caller, req->params[0], &json, err);
    if (rc != STW_OK)
        return rc;
    return reply_raw(rep, MHD_HTTP_OK, json, err);
}

static stw_code h_audit_events(struct request *req, struct reply *rep, stw_error *err)
{
    stw_event_filter f;
    char principal[HTTP_ARG_MAX], type[HTTP_ARG_MAX];
    int has_principal = 0, has_type = 0;
    int64_t limit = 0, after = 0;
    char *json = NULL;
    stw_code rc;

    memset(&f, 0, sizeof f);
    rc = arg_time(req, "since", &f.since_ms, err);
    if (rc == STW_OK)
        rc = arg_time(req, "until", &f.until_ms, err);
    if (rc == STW_OK)
        rc = arg_get(req, "principal", principal, sizeof principal, &has_principal, err);
    if (rc == STW_OK)
        rc = arg_get(req, "type", type, sizeof type, &has_type, err);
    if (rc == STW_OK)
        rc = arg_int(req, "limit", 1, STW_AUDIT_PAGE_MAX, STW_AUDIT_PAGE_DEFAULT, &limit, err);
    if (rc == STW_OK)
        rc = arg_int(req, "after", 0, INT64_MAX, 0, &after, err);
    if (rc != STW_OK)
        return rc;
    f.principal = has_principal ? principal : NULL;
    f.type = has_type ? type : NULL;
    f.limit = (size_t)limit;
    f.after_seq = after;
    rc = stw_audit_events(req->srv->db, &req->caller, &f, &json, err);
    if (rc != STW_OK)
        return rc;
    return reply_raw(rep, MHD_HTTP_OK, json, err);
}

static stw_code h_audit_verify(struct request *req, struct reply *rep, stw_error *err)
{
    char *json = NULL;
    stw_code rc;

    rc = stw_audit_verify(req->srv->db, &req->caller, &json, err);
    if (rc != STW_OK)
        return rc;
    return reply_raw(rep, MHD_HTTP_OK, json, err);
}

static stw_code h_audit_disclosures(struct request *req, struct reply *rep, stw_error *err)
{
    char subject[HTTP_ARG_MAX];
    int has_subject = 0;
    int64_t since = STW_TIME_NONE, until = STW_TIME_NONE;
    char *json = NULL;
    stw_code rc;

    rc = arg_get(req, "subject", subject, sizeof subject, &has_subject, err);
    if (rc == STW_OK)
        rc = arg_time(req, "since", &since, err);
    if (rc == STW_OK)
        rc = arg_time(req, "until", &until, err);
    if (rc != STW_OK)
        return rc;
    if (!has_subject)
        return stw_errorf(err, STW_INVALID, "missing_field", "query parameter subject is missing");
    rc = stw_audit_disclosures(req->srv->db, &req->caller, subject, since, until, &json, err);
    if (rc != STW_OK)
        return rc;
    return reply_raw(rep, MHD_HTTP_OK, json, err);
}

static stw_code h_usage(struct request *req, struct reply *rep, stw_error *err)
{
    char group_by[HTTP_ARG_MAX];
    int has_group = 0;
    int64_t since = STW_TIME_NONE, until = STW_TIME_NONE;
    char *json = NULL;
    stw_code rc;

    rc = arg_get(req, "group_by", group_by, sizeof group_by, &has_group, err);
    if (rc == STW_OK)
        rc = arg_time(req, "since", &since, err);
    if (rc == STW_OK)
        rc = arg_time(req, "until", &until, err);
    if (rc != STW_OK)
        return rc;
    rc = stw_usage(req->srv->db, &req->caller, has_group ? group_by : "principal", since, until,
                   &json, err);
    if (rc != STW_OK)
        return rc;
    return reply_raw(rep, MHD_HTTP_OK, json, err);
}

/* ---- the route table -------------------------------------------------------------------- */

static const struct route routes[] = {
    {"GET", "/healthz", 0, h_healthz},
    {"GET", "/metrics", 0, h_metrics},
    {"GET", "/openapi.yaml", 0, h_openapi},
    {"POST", "/v1/principals", 1, h_principal_create},
    {"POST", "/v1/grants", 1, h_grant_create},
    {"DELETE", "/v1/grants/{id}", 1, h_grant_revoke},
    {"POST", "/v1/suppressions", 1, h_suppression_create},
    {"DELETE", "/v1/suppressions/{id}", 1, h_suppression_lift},
    {"GET", "/v1/policy", 1, h_policy_get},
    {"POST", "/v1/products", 1, h_product_create},
    {"GET", "/v1/products", 1, h_product_list},
    {"GET", "/v1/products/{p}", 1, h_product_get},
    {"POST", "/v1/products/{p}/versions", 1, h_version_create},
    {"GET", "/v1/products/{p}/versions", 1, h_version_list},
    {"GET", "/v1/products/{p}/versions/{v}", 1, h_version_get},
    {"POST", "/v1/products/{p}/versions/{v}/chunks", 1, h_chunks_add},
    {"POST", "/v1/products/{p}/versions/{v}/publish", 1, h_version_publish},
    {"POST", "/v1/products/{p}/versions/{v}/retire", 1, h_version_retire},
    {"POST", "/v1/query", 1, h_query},
    {"GET", "/v1/audit/queries/{id}", 1, h_audit_query},
    {"GET", "/v1/audit/events", 1, h_audit_events},
    {"GET", "/v1/audit/verify", 1, h_audit_verify},
    {"GET", "/v1/audit/disclosures", 1, h_audit_disclosures},
    {"GET", "/v1/usage", 1, h_usage},
};

#define NROUTES (sizeof routes / sizeof routes[0])

size_t http_route_count(void)
{
    return NROUTES;
}

int http_route_at(size_t i, const char **method, const char **pattern, int *auth)
{
    if (i >= NROUTES)
        return -1;
    *method = routes[i].method;
    *pattern = routes[i].pattern;
    *auth = routes[i].auth;
    return 0;
}

/* One path segment: [s, s + n). */
struct seg {
    const char *s;
    size_t n;
};

/* Splits "/a/b/c" into segments; -1 if there are too many or the path is not absolute. */
static int split_path(const char *url, struct seg segs[HTTP_MAX_SEGMENTS], size_t *nsegs)
{
    const char *p = url;
    size_t n = 0;

    if (url == NULL || url[0] != '/')
        return -1;
    while (*p == '/') {
        const char *start = ++p;

        while (*p != '\0' && *p != '/')
            p++;
        if (n == HTTP_MAX_SEGMENTS)
            return -1;
        segs[n].s = start;
        segs[n].n = (size_t)(p - start);
        n++;
    }
    *nsegs = n;
    return 0;
}

/* 1 if the segments fit the route's pattern; captures are not decoded here. */
static int pattern_match(const char *pattern, const struct seg *segs, size_t nsegs)
{
    const char *p = pattern;
    size_t i = 0;

    while (*p == '/') {
        const char *start = ++p;
        size_t n;

        while (*p != '\0' && *p != '/')
            p++;
        n = (size_t)(p - start);
        if (i >= nsegs)
            return 0;
        if (start[0] == '{') {
            if (segs[i].n == 0)
                return 0;
        } else if (segs[i].n != n || memcmp(segs[i].s, start, n) != 0) {
            return 0;
        }
        i++;
    }
    return i == nsegs;
}

/* Decodes the path's captures for route r into req->params. */
static stw_code capture_params(struct request *req, const struct route *r, const struct seg *segs,
                               size_t nsegs, stw_error *err)
{
    const char *p = r->pattern;
    size_t i = 0, k = 0;

    while (*p == '/' && i < nsegs) {
        const char *start = ++p;

        while (*p != '\0' && *p != '/')
            p++;
        if (start[0] == '{' && k < HTTP_MAX_PARAMS) {
            if (pct_decode(segs[i].s, segs[i].n, req->params[k], sizeof req->params[k]) != 0)
                return stw_errorf(err, STW_NOT_FOUND, "not_found",
                                  "path segment %zu is badly encoded or too long", i + 1);
            k++;
        }
        i++;
    }
    return STW_OK;
}

/* Finds the route for method + url. On failure *err is 404 not_found or 405
 * method_not_allowed (req->allow filled). */
static stw_code route_find(struct request *req, const char *url, const char *method, stw_error *err)
{
    struct seg segs[HTTP_MAX_SEGMENTS];
    size_t nsegs = 0, i;
    int path_known = 0;
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;

    req->allow[0] = '\0';
    if (split_path(url, segs, &nsegs) != 0)
        return stw_errorf(err, STW_NOT_FOUND, "not_found", "no such route; see docs/api.md");
    for (i = 0; i < NROUTES; i++) {
        if (!pattern_match(routes[i].pattern, segs, nsegs))
            continue;
        if (strcmp(routes[i].method, m) == 0) {
            req->route = &routes[i];
            return capture_params(req, &routes[i], segs, nsegs, err);
        }
        if (path_known)
            strncat(req->allow, ", ", sizeof req->allow - strlen(req->allow) - 1);
        strncat(req->allow, routes[i].method, sizeof req->allow - strlen(req->allow) - 1);
        if (strcmp(routes[i].method, "GET") == 0)
            strncat(req->allow, ", HEAD", sizeof req->allow - strlen(req->allow) - 1);
        path_known = 1;
    }
    if (path_known)
        return stw_errorf(err, STW_METHOD, "method_not_allowed",
                          "this method is not allowed here; allowed: %s", req->allow);
    return stw_errorf(err, STW_NOT_FOUND, "not_found", "no such route; see docs/api.md");
}

/* ---- metrics ---------------------------------------------------------------------------- */

static const unsigned status_slots[] = {200, 201, 400, 401, 403, 404, 405,
                                        409, 410, 413, 422, 500, 503};
#define NSTATUS (sizeof status_slots / sizeof status_slots[0] + 1) /* last: any other */

/* Histogram upper bounds (seconds) for request, query and receipt times, and for the
 * allow-set's share of a version; each histogram also has a +Inf bucket. */
static const double time_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5};
#define NTIME (sizeof time_bounds / sizeof time_bounds[0] + 1)
static const double share_bounds[] = {0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1};
#define NSHARE (sizeof share_bounds / sizeof share_bounds[0] + 1)
/* the planner's strategies (search.h), and "mixed" for a query whose versions differed */
static const char *const strategies[] = {"exact",    "sq8",      "sq1",   "cells", "hnsw",
                                         "hnsw+exact", "hnsw+sq8", "hnsw+sq1", "mixed"};
#define NSTRATEGY (sizeof strategies / sizeof strategies[0])
/* reasons a request is refused (401 and 403 error codes); the last slot counts others */
static const char *const denials[] = {"missing_api_key", "invalid_api_key", "forbidden",
                                      "not_entitled", "other"};
#define NDENIAL (sizeof denials / sizeof denials[0])

struct histogram {
    _Atomic uint64_t bucket[NTIME > NSHARE ? NTIME : NSHARE]; /* not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_micro; /* sum in millionths of the unit (us, or share x 1e6) */
};

/* Counters only, so every field is an independent relaxed atomic. Row NROUTES counts requests
 * that matched no route. */
struct http_metrics {
    _Atomic uint64_t requests[NROUTES + 1][NSTATUS];
    struct histogram latency[NROUTES + 1];
    struct histogram query[NSTRATEGY];  /* stw_query_run time by strategy */
    struct histogram share;             /* allowed / rows, per version searched */
    struct histogram receipt;           /* time to make a query's receipt durable */
    _Atomic uint64_t incomplete;        /* answers with complete=false */
    _Atomic uint64_t denied[NDENIAL];
    _Atomic uint64_t chunks_accepted, chunks_unchanged, publishes;
};

static void hist_add(struct histogram *h, const double *bounds, size_t nb, double v)
{
    size_t i = 0;
    while (i < nb && v > bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)(v * 1e6), memory_order_relaxed);
}

/* One histogram in Prometheus text: cumulative buckets, then sum and count. labels is
 * "" or `key="value",` (a trailing comma). */
static void hist_print(FILE *f, const char *name, const char *labels, const struct histogram *h,
                       const double *bounds, size_t nb)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= nb; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < nb)
            fprintf(f, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", name, labels, bounds[i], cum);
        else
            fprintf(f, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
    }
    {
        size_t n = strlen(labels);
        char bare[160];
        /* sum and count take the labels without the trailing comma */
        snprintf(bare, sizeof bare, "%.*s", n > 0 ? (int)n - 1 : 0, labels);
        fprintf(f, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %" PRIu64 "\n", name, n ? "{" : "", bare,
                n ? "}" : "",
                (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6, name,
                n ? "{" : "", bare, n ? "}" : "",
                atomic_load_explicit(&h->count, memory_order_relaxed));
    }
}

static void metrics_ingest(struct http_metrics *m, size_t accepted, size_t unchanged,
                           int published)
{
    if (m == NULL)
        return;
    atomic_fetch_add_explicit(&m->chunks_accepted, accepted, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->chunks_unchanged, unchanged, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->publishes, (uint64_t)published, memory_order_relaxed);
}

/* What a query's answer tells the operator (never PHI: counts, times and strategy names). */
static void metrics_query(struct http_metrics *m, const stw_answer *a, double ms)
{
    size_t st = NSTRATEGY; /* none yet */

    if (m == NULL)
        return;
    for (size_t i = 0; i < a->nplan; i++) {
        const stw_plan_step *p = &a->plan[i];
        size_t j = 0;
        while (j + 1 < NSTRATEGY && (p->strategy == NULL || strcmp(p->strategy, strategies[j])))
            j++;
        st = st == NSTRATEGY || st == j ? j : NSTRATEGY - 1;
        if (p->rows > 0)
            hist_add(&m->share, share_bounds, NSHARE - 1, (double)p->allowed / (double)p->rows);
    }
    if (st < NSTRATEGY)
        hist_add(&m->query[st], time_bounds, NTIME - 1, ms / 1000.0);
    if (a->receipt_ms > 0)
        hist_add(&m->receipt, time_bounds, NTIME - 1, a->receipt_ms / 1000.0);
    if (!a->complete)
        atomic_fetch_add_explicit(&m->incomplete, 1, memory_order_relaxed);
}

static size_t status_slot(unsigned status)
{
    size_t i;

    for (i = 0; i + 1 < NSTATUS; i++) {
        if (status_slots[i] == status)
            return i;
    }
    return NSTATUS - 1;
}

static void metrics_count(struct http_metrics *m, size_t route, unsigned status, double ms,
                          const char *err_name)
{
    if (m == NULL)
        return;
    atomic_fetch_add_explicit(&m->requests[route][status_slot(status)], 1, memory_order_relaxed);
    hist_add(&m->latency[route], time_bounds, NTIME - 1, ms / 1000.0);
    if (status == 401 || status == 403) {
        size_t i = 0;
        while (i + 1 < NDENIAL && strcmp(err_name, denials[i]) != 0)
            i++;
        atomic_fetch_add_explicit(&m->denied[i], 1, memory_order_relaxed);
    }
}

static stw_code h_metrics(struct request *req, struct reply *rep, stw_error *err)
{
    const struct http_metrics *m = req->srv->metrics;
    char *text = NULL;
    size_t size = 0, r, s;
    FILE *f = open_memstream(&text, &size);

    if (f == NULL)
        return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
    fprintf(f, "# HELP steward_up 1 while the server is serving.\n"
               "# TYPE steward_up gauge\nsteward_up 1\n");
    fprintf(f,
            "# HELP steward_http_requests_in_flight Requests begun and not yet completed.\n"
            "# TYPE steward_http_requests_in_flight gauge\n"
            "steward_http_requests_in_flight %zu\n",
            atomic_load(&req->srv->inflight));
    fprintf(f, "# HELP steward_http_requests_total Completed HTTP requests by route pattern and "
               "status.\n# TYPE steward_http_requests_total counter\n");
    for (r = 0; r <= NROUTES; r++) {
        const char *method = r < NROUTES ? routes[r].method : "";
        const char *route = r < NROUTES ? routes[r].pattern : "unmatched";

        for (s = 0; s < NSTATUS; s++) {
            uint64_t v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);

            if (v == 0)
                continue;
            if (s + 1 < NSTATUS)
                fprintf(f,
                        "steward_http_requests_total{method=\"%s\",route=\"%s\",status=\"%u\"} "
                        "%" PRIu64 "\n",
                        method, route, status_slots[s], v);
            else
                fprintf(f,
                        "steward_http_requests_total{method=\"%s\",route=\"%s\",status=\"other\"}"
                        " %" PRIu64 "\n",
                        method, route, v);
        }
    }
    fprintf(f, "# HELP steward_http_request_duration_seconds Time from request start to "
               "completion.\n# TYPE steward_http_request_duration_seconds histogram\n");
    for (r = 0; r <= NROUTES; r++) {
        char labels[160];
        if (atomic_load_explicit(&m->latency[r].count, memory_order_relaxed) == 0)
            continue;
        snprintf(labels, sizeof labels, "method=\"%s\",route=\"%s\",",
                 r < NROUTES ? routes[r].method : "", r < NROUTES ? routes[r].pattern : "unmatched");
        hist_print(f, "steward_http_request_duration_seconds", labels, &m->latency[r],
                   time_bounds, NTIME - 1);
    }
    fprintf(f, "# HELP steward_query_duration_seconds Search, merge and receipt of answered "
               "queries, by the planner's strategy (mixed: versions differed).\n"
               "# TYPE steward_query_duration_seconds histogram\n");
    for (s = 0; s < NSTRATEGY; s++) {
        char labels[64];
        snprintf(labels, sizeof labels, "strategy=\"%s\",", strategies[s]);
        hist_print(f, "steward_query_duration_seconds", labels, &m->query[s], time_bounds,
                   NTIME - 1);
    }
    fprintf(f, "# HELP steward_allowset_share Allowed rows / rows of each version a query "
               "searched.\n# TYPE steward_allowset_share histogram\n");
    hist_print(f, "steward_allowset_share", "", &m->share, share_bounds, NSHARE - 1);
    fprintf(f, "# HELP steward_audit_receipt_seconds Time to make a query's receipt durable "
               "(group commit included).\n# TYPE steward_audit_receipt_seconds histogram\n");
    hist_print(f, "steward_audit_receipt_seconds", "", &m->receipt, time_bounds, NTIME - 1);
    {
        stw_receipt_stats rs;
        stw_receipt_stats_get(req->srv->db, &rs);
        fprintf(f,
                "# HELP steward_receipt_journal 1 if receipts go through the receipt journal, 0 "
                "if each is committed before its answer.\n# TYPE steward_receipt_journal gauge\n"
                "steward_receipt_journal %d\n"
                "# HELP steward_receipts_journaled_total Receipts appended to the journal.\n"
                "# TYPE steward_receipts_journaled_total counter\n"
                "steward_receipts_journaled_total %llu\n"
                "# HELP steward_receipts_indexed_total Journaled receipts written into the audit "
                "trail.\n# TYPE steward_receipts_indexed_total counter\n"
                "steward_receipts_indexed_total %llu\n"
                "# HELP steward_receipt_backlog_bytes Journal bytes not yet in the audit trail.\n"
                "# TYPE steward_receipt_backlog_bytes gauge\nsteward_receipt_backlog_bytes %llu\n"
                "# HELP steward_receipt_indexer_seconds_total Time the indexer spent writing "
                "receipts into the trail.\n# TYPE steward_receipt_indexer_seconds_total counter\n"
                "steward_receipt_indexer_seconds_total %.3f\n",
                rs.journal, rs.appended, rs.indexed, rs.backlog_bytes, rs.index_seconds);
    }
    fprintf(f, "# HELP steward_query_incomplete_total Answers with complete=false.\n"
               "# TYPE steward_query_incomplete_total counter\n"
               "steward_query_incomplete_total %" PRIu64 "\n",
            atomic_load_explicit(&m->incomplete, memory_order_relaxed));
    fprintf(f, "# HELP steward_denials_total Requests refused (401, 403) by reason.\n"
               "# TYPE steward_denials_total counter\n");
    for (s = 0; s < NDENIAL; s++)
        fprintf(f, "steward_denials_total{reason=\"%s\"} %" PRIu64 "\n", denials[s],
                atomic_load_explicit(&m->denied[s], memory_order_relaxed));
    fprintf(f,
            "# HELP steward_ingest_chunks_total Chunks sent to drafts, by outcome.\n"
            "# TYPE steward_ingest_chunks_total counter\n"
            "steward_ingest_chunks_total{outcome=\"accepted\"} %" PRIu64 "\n"
            "steward_ingest_chunks_total{outcome=\"unchanged\"} %" PRIu64 "\n"
            "# HELP steward_publishes_total Versions published through this server.\n"
            "# TYPE steward_publishes_total counter\nsteward_publishes_total %" PRIu64 "\n",
            atomic_load_explicit(&m->chunks_accepted, memory_order_relaxed),
            atomic_load_explicit(&m->chunks_unchanged, memory_order_relaxed),
            atomic_load_explicit(&m->publishes, memory_order_relaxed));
    if (fclose(f) != 0 || text == NULL) {
        free(text);
        return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
    }
    rep->status = MHD_HTTP_OK;
    rep->text = text;
    return STW_OK;
}

/* ---- the libmicrohttpd callbacks -------------------------------------------------------- */

/* Sets req->early (kept until the body is drained). */
static void request_fail_early(struct request *req, const stw_error *err)
{
    if (req->has_early)
        return;
    req->early = *err;
    req->has_early = 1;
}

static void request_authenticate(struct request *req)
{
    static const char bearer[] = "Bearer ";
    const char *h =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *key;
    stw_error err;

    memset(&err, 0, sizeof err);
    if (h == NULL || h[0] == '\0') {
        stw_errorf(&err, STW_UNAUTHENTICATED, "missing_api_key",
                   "the Authorization header is missing; send 'Authorization: Bearer <api_key>'");
        request_fail_early(req, &err);
        return;
    }
    if (strncasecmp(h, bearer, sizeof bearer - 1) != 0) {
        stw_errorf(&err, STW_UNAUTHENTICATED, "missing_api_key",
                   "the Authorization header must be 'Bearer <api_key>'");
        request_fail_early(req, &err);
        return;
    }
    key = h + sizeof bearer - 1;
    while (*key == ' ')
        key++;
    if (*key == '\0') {
        stw_errorf(&err, STW_UNAUTHENTICATED, "missing_api_key",
                   "the Authorization header carries no API key");
        request_fail_early(req, &err);
        return;
    }
    if (stw_authenticate(req->srv->db, key, &req->caller, &err) != STW_OK) {
        if (err.code == STW_OK) /* defensive: never let a failed call authenticate */
            stw_errorf(&err, STW_UNAUTHENTICATED, "invalid_api_key", "unknown API key");
        request_fail_early(req, &err);
        return;
    }
    req->authenticated = 1;
}

/* "GET" etc. for the log; anything odd becomes "OTHER" (the method is client-chosen). */
static void copy_method(char dst[8], const char *method)
{
    size_t i, n = strlen(method);

    for (i = 0; i < n; i++) {
        if (method[i] < 'A' || method[i] > 'Z')
            break;
    }
    if (n == 0 || n > 7 || i != n)
        snprintf(dst, 8, "OTHER");
    else
        memcpy(dst, method, n + 1);
}

static enum MHD_Result count_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    size_t *total = cls;

    (void)kind;
    *total += strlen(key) + (value != NULL ? strlen(value) : 0) + 4 + HTTP_HEADER_OVERHEAD;
    return MHD_YES;
}

/* The bytes the request line and headers hold in the connection's pool, as counted against
 * --max-header: each line's text (name, ": ", value, CRLF) plus HTTP_HEADER_OVERHEAD per
 * header, query argument and cookie. */
static size_t request_header_bytes(struct request *req, const char *url, const char *method)
{
    size_t total = strlen(method) + 1 + strlen(url) + sizeof " HTTP/1.1\r\n" - 1;

    MHD_get_connection_values(req->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND | MHD_COOKIE_KIND,
                              &count_header_bytes, &total);
    return total;
}

/* First call: headers only. */
static enum MHD_Result request_begin(struct request *req, const char *url, const char *method)
{
    const struct server_config *cfg = req->srv->cfg;
    const char *cl, *expect;
    stw_error err;
    unsigned long long announced = 0;
    size_t hbytes;
    int has_length = 0;

    memset(&err, 0, sizeof err);
    hbytes = request_header_bytes(req, url, method);
    if (hbytes > cfg->max_header && cfg->max_header > 0) {
        /* Checked before anything runs: near the pool's end libmicrohttpd could still call us
         * but then have no room left for the answer, and the client would get none. */
        stw_errorf(&err, STW_TOO_LARGE, "headers_too_large",
                   "the request line and headers take %zu bytes; the limit is %zu", hbytes,
                   cfg->max_header);
        request_fail_early(req, &err);
    } else if (route_find(req, url, method, &err) != STW_OK)
        request_fail_early(req, &err);
    else if (req->route->auth)
        request_authenticate(req);

    cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL) {
        char *end = NULL;

        errno = 0;
        announced = strtoull(cl, &end, 10);
        has_length = end != cl && *end == '\0' && errno == 0;
    }
    if (has_length && announced > cfg->max_body) {
        stw_errorf(&err, STW_TOO_LARGE, "body_too_large",
                   "the request body is %llu bytes; the limit is %zu", announced, cfg->max_body);
        request_fail_early(req, &err);
        req->too_large = 1;
    } else if (has_length && announced > 0 && !req->has_early) {
        /* Size the buffer once for bodies that announce their length. */
        req->body = malloc((size_t)announced + 1);
        if (req->body != NULL) {
            req->cap = (size_t)announced + 1;
            req->body[0] = '\0';
        }
    }

    if (req->has_early) {
        /* Answer now only when the client will not be mid-send: it waits for 100-continue,
         * or it announced more than we would ever drain. Otherwise answer after the body. */
        expect = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
        if ((expect != NULL && strcasecmp(expect, "100-continue") == 0) ||
            (has_length && announced > cfg->max_body &&
             announced - cfg->max_body > HTTP_DRAIN_EXTRA))
            return send_error(req, &req->early);
    }
    return MHD_YES;
}

/* Body piece: keep it under the cap, count it always. 0, or -1 to cut the connection. */
static int request_take_body(struct request *req, const char *data, size_t n)
{
    const size_t max = req->srv->cfg->max_body;
    const size_t ceiling = max > SIZE_MAX - HTTP_DRAIN_EXTRA ? SIZE_MAX : max + HTTP_DRAIN_EXTRA;
    stw_error err;

    req->received = n > SIZE_MAX - req->received ? SIZE_MAX : req->received + n;
    if (req->received > ceiling)
        return -1;
    if (req->has_early || req->too_large)
        return 0;
    if (req->received > max) {
        /* Chunked upload without Content-Length went over the cap. */
        memset(&err, 0, sizeof err);
        stw_errorf(&err, STW_TOO_LARGE, "body_too_large",
                   "the request body is larger than the limit of %zu bytes", max);
        request_fail_early(req, &err);
        req->too_large = 1;
        free(req->body);
        req->body = NULL;
        req->len = req->cap = 0;
        return 0;
    }
    if (req->len + n + 1 > req->cap) {
        size_t cap = req->cap > 0 ? req->cap : 4096;
        char *nb;

        while (cap < req->len + n + 1)
            cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
        nb = realloc(req->body, cap);
        if (nb == NULL) {
            memset(&err, 0, sizeof err);
            stw_errorf(&err, STW_NOMEM, "out_of_memory", "out of memory for the request body");
            request_fail_early(req, &err);
            free(req->body);
            req->body = NULL;
            req->len = req->cap = 0;
            return 0;
        }
        req->body = nb;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, n);
    req->len += n;
    req->body[req->len] = '\0';
    return 0;
}

/* Last call: the whole body is in. */
static enum MHD_Result request_finish(struct request *req)
{
    struct reply rep;
    stw_error err;
    enum MHD_Result ret;

    if (req->has_early)
        return send_error(req, &req->early);
    memset(&rep, 0, sizeof rep);
    memset(&err, 0, sizeof err);
    if (req->route->fn(req, &rep, &err) != STW_OK)
        ret = send_error(req, &err);
    else
        ret = send_result(req, &rep);
    reply_release(&rep);
    return ret;
}

static enum MHD_Result http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_data_size,
                                       void **con_cls)
{
    struct server *srv = cls;
    struct request *req = *con_cls;

    (void)version;
    if (req == NULL) {
        req = calloc(1, sizeof *req);
        if (req == NULL)
            return MHD_NO;
        req->srv = srv;
        req->conn = conn;
        clock_gettime(CLOCK_MONOTONIC, &req->t0);
        copy_method(req->method, method);
        atomic_fetch_add(&srv->inflight, 1);
        *con_cls = req;
        return request_begin(req, url, method);
    }
    if (req->status != 0) { /* answered early; nothing more to read */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        int rc = request_take_body(req, upload_data, *upload_data_size);

        *upload_data_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO;
    }
    return request_finish(req);
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "ok";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
    }
    return "unknown";
}

static void http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct server *srv = cls;
    struct request *req = *con_cls;
    const char *route;
    double ms;

    (void)conn;
    if (req == NULL)
        return;
    ms = elapsed_ms(&req->t0);
    route = req->route != NULL ? req->route->pattern : "unmatched";
    if (req->status != 0)
        metrics_count(srv->metrics, req->route != NULL ? (size_t)(req->route - routes) : NROUTES,
                      req->status, ms, req->err_name);
    log_msg(&srv->log, req->status >= 500 || req->status == 0 ? STW_LOG_WARN : STW_LOG_INFO,
            "event=http method=%s route=%s status=%u principal=%s latency_ms=%.3f bytes_in=%zu"
            "%s%s%s%s%s%s",
            req->method, route, req->status, req->authenticated ? req->caller.id : "-", ms,
            req->received, req->query_id[0] != '\0' ? " query_id=" : "", req->query_id,
            req->err_name[0] != '\0' ? " error=" : "", req->err_name,
            toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? " end=" : "",
            toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? termination_name(toe) : "");
    free(req->body);
    explicit_bzero(req, sizeof *req); /* the caller's identity should not linger in the heap */
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->inflight, 1);
}

/* Keeps the URL and arguments raw: captures are decoded one segment at a time (so "%2F" stays
 * inside its segment) and arguments by arg_get. */
static size_t http_unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

__attribute__((format(printf, 2, 0))) static void http_mhd_log(void *cls, const char *fmt,
                                                               va_list ap)
{
    struct server *srv = cls;
    char msg[512], quoted[600];
    size_t n;

    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_msg(&srv->log, STW_LOG_WARN, "event=mhd msg=%s", log_quote(quoted, sizeof quoted, msg));
}

/* ---- start / stop ----------------------------------------------------------------------- */

stw_code http_start(struct server *srv, stw_error *err)
{
    const struct server_config *cfg = srv->cfg;
    struct addrinfo hints, *ai = NULL;
    struct sockaddr_storage addr;
    /* poll(), not epoll: MHD_quiesce_daemon on an epoll thread pool races with the workers'
     * own removal of the listening socket and libmicrohttpd 0.9.75 aborts the process when it
     * loses ("Failed to remove listen FD from epoll set", seen in CI at SIGTERM; an open
     * defect). platform.md section 5 measured the poll pool at least as fast at 16
     * connections. */
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;
    stw_code rc = STW_OK;
    int gai;

    memset(&hints, 0, sizeof hints);
    memset(&addr, 0, sizeof addr);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    gai = getaddrinfo(cfg->host[0] != '\0' ? cfg->host : NULL, "0", &hints, &ai);
    if (gai != 0 || ai == NULL || ai->ai_addrlen > sizeof addr) {
        rc = stw_errorf(err, STW_INVALID, "invalid_listen", "cannot resolve listen host '%s': %s",
                        cfg->host, gai != 0 ? gai_strerror(gai) : "no address");
        goto done;
    }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    if (addr.ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        ((struct sockaddr_in *)&addr)->sin_port = htons(cfg->port);
    }

    srv->metrics = calloc(1, sizeof *srv->metrics);
    if (srv->metrics == NULL) {
        rc = stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        goto done;
    }
    atomic_store(&srv->inflight, 0);
    atomic_store(&srv->stopping, 0);
    srv->mhd = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, &http_on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
        http_mhd_log, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)(cfg->threads > 0 ? cfg->threads : 1),
        /* the per-connection pool holds the request line, the headers, the read buffer and the
         * response headers: --max-header for the request's headers (request_begin refuses
         * more with 431 headers_too_large) plus a reserve, so that an answer always fits.
         * Headers beyond the whole pool get libmicrohttpd's own 431 (414: request line). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (cfg->max_header > 0 ? cfg->max_header : (size_t)STW_DEFAULT_MAX_HEADER) +
            HTTP_CONN_RESERVE,
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)(cfg->request_timeout > 0 ? cfg->request_timeout
                                                : STW_DEFAULT_REQUEST_TIMEOUT),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONN_LIMIT, MHD_OPTION_NOTIFY_COMPLETED,
        &http_on_completed, srv, MHD_OPTION_UNESCAPE_CALLBACK, &http_unescape_none, NULL,
        MHD_OPTION_END);
    if (srv->mhd == NULL) {
        rc = stw_errorf(err, STW_INTERNAL, "listen_failed", "cannot listen on %s:%u: %s", cfg->host,
                        (unsigned)cfg->port,
                        errno != 0 ? strerror(errno) : "libmicrohttpd refused to start");
        goto done;
    }
    info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = (info != NULL && info->port != 0) ? info->port : cfg->port;
done:
    if (ai != NULL)
        freeaddrinfo(ai);
    if (rc != STW_OK) {
        free(srv->metrics);
        srv->metrics = NULL;
    }
    return rc;
}

void http_stop(struct server *srv, unsigned drain_ms)
{
    unsigned waited = 0;

    if (srv == NULL)
        return;
    if (srv->mhd != NULL) {
        MHD_socket fd;

        atomic_store(&srv->stopping, 1);
        /* Stop accepting; the listening socket is ours from here on. It is shut down now (new
         * connections are refused) but closed only after MHD_stop_daemon, when no worker can
         * still be polling it. */
        fd = MHD_quiesce_daemon(srv->mhd);
        if (fd != MHD_INVALID_SOCKET)
            shutdown(fd, SHUT_RDWR);
        while (atomic_load(&srv->inflight) > 0 && waited < drain_ms) {
            struct timespec ts = {0, 10 * 1000 * 1000};

            nanosleep(&ts, NULL);
            waited += 10;
        }
        MHD_stop_daemon(srv->mhd);
        srv->mhd = NULL;
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
    free(srv->metrics);
    srv->metrics = NULL;
}
