/* harness.h - run the real `steward` binary on loopback and talk HTTP to it.
 *
 * th_start() makes a fresh temporary folder, runs `steward init --data DIR/data` (keeping the
 * admin key it prints), then `steward serve --data DIR/data --listen 127.0.0.1:0` and waits for
 * its `listening on http://127.0.0.1:PORT` line.  th_stop() sends SIGTERM, reaps the process,
 * checks that it exited cleanly (so an ASan report in the server fails the test) and removes
 * the folder (kept when STW_KEEP_DATA=1 is set, and its path printed).  The server's stdout and
 * stderr go to DIR/server.out and DIR/server.log (files, not pipes, so a chatty server can never
 * block on a full pipe); the log's tail is printed when a test has failures.
 *
 * Requests go through one libcurl handle per server (keep-alive).  Every response is returned
 * as status + body + parsed JSON.  Helpers that set up state (principals, products, ...) check
 * the status they expect with check.h and return non-zero on failure, so a test can bail out.
 *
 * No mocks: everything here talks to the real binary.  Thread: single-threaded.
 */
#ifndef STW_TESTS_HARNESS_H
#define STW_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "check.h"

#define TH_PATH_MAX 1024
#define TH_KEY_MAX  256

typedef struct th_server {
    char bin[TH_PATH_MAX];
    char root[TH_PATH_MAX];     /* the mkdtemp folder */
    char data[TH_PATH_MAX + 8]; /* root/data: the store */
    char admin_key[TH_KEY_MAX];
    pid_t pid; /* 0 when not running */
    int port;
    char base[64]; /* "http://127.0.0.1:PORT" */
    void *curl;    /* CURL *, reused for keep-alive */
    /* When non-zero, `steward serve` (not init or th_run) starts with RLIMIT_FSIZE at this many
     * bytes and SIGXFSZ ignored, so writes past it fail with EFBIG: a full disk for one process.
     * Set it between th_halt and th_resume. */
    unsigned long long fsize_limit;
} th_server;

typedef struct th_resp {
    long status; /* HTTP status; 0 if the exchange failed */
    char *body;  /* owned, NUL-terminated ("" if empty) */
    size_t len;
    cJSON *json; /* owned; NULL if the body is not JSON */
} th_resp;

/* The steward binary: argv[1] if given, else the STEWARD_BIN compile definition. */
const char *th_steward_bin(int argc, char **argv);

/* Init a fresh store and serve it. 0 on success (failures are counted as checks). */
int th_start(th_server *s, const char *bin);
/* Stop the server (SIGTERM, reap) and serve the same data folder again on a new port. */
int th_restart(th_server *s);
/* Stop only the server process (the data folder stays), and serve it again. */
void th_halt(th_server *s);
int th_resume(th_server *s);
/* Runs `steward ARGS...` to completion (args end with NULL); *out (may be NULL) gets its
 * stdout (owned, free()). Returns the exit status, or -1 if it did not exit normally. */
int th_run(th_server *s, char *const args[], char **out);
/* Stop the server, remove the temporary folder, release the curl handle. */
void th_stop(th_server *s);

/* One request. key NULL: no Authorization header. body NULL: no body. r is always filled
 * (release with th_resp_release). Returns r->status. */
long th_request(th_server *s, const char *method, const char *path, const char *key,
                const char *body, size_t body_len, th_resp *r);
/* POST body with "Transfer-Encoding: chunked" (no Content-Length), fed in 64 KiB pieces. */
long th_request_chunked(th_server *s, const char *path, const char *key, const char *body,
                        size_t body_len, th_resp *r);
/* Same, with a cJSON body (NULL: none) and a printf-formatted path. */
long th_req(th_server *s, const char *method, const char *key, const cJSON *body, th_resp *r,
            const char *path_fmt, ...) __attribute__((format(printf, 6, 7)));
void th_resp_release(th_resp *r);

/* Checks an error response: status, {"error":{"code","message"}} with a non-empty snake_case
 * code (== code when code is not NULL), a non-empty message (containing `contains` when not
 * NULL). Prints the body on failure. 1 if all held. */
int th_check_error(const char *file, int line, const th_resp *r, long status, const char *code,
                   const char *contains);
#define TH_CHECK_ERROR(r, status, code, contains)                                                  \
    th_check_error(__FILE__, __LINE__, (r), (status), (code), (contains))
/* Checks the status, printing the body on a mismatch. */
int th_check_status(const char *file, int line, const th_resp *r, long status);
#define TH_CHECK_STATUS(r, status) th_check_status(__FILE__, __LINE__, (r), (status))

/* ---- JSON helpers ---- */
/* Borrowed: the member at a dotted path ("error.code"), or NULL. */
const cJSON *th_get(const cJSON *json, const char *dotted);
/* The string at path, or NULL. */
const char *th_str(const cJSON *json, const char *dotted);
/* The number at path, or dflt. */
double th_num(const cJSON *json, const char *dotted, double dflt);
/* A new array of strings from "a,b,c" ("" gives an empty array). Owned. */
cJSON *th_str_array(const char *csv);
/* A new array of numbers from floats (printed so that they parse back to the same float). */
cJSON *th_vec_array(const float *v, size_t n);

/* ---- setup helpers: each checks the documented success status ---- */
/* Admin creates a principal; returns its API key (owned, free()) or NULL. */
char *th_principal_create(th_server *s, const char *id, const char *roles_csv,
                          const char *domains_csv);
/* Admin creates a product. compartments/prov_required are CSV lists. 0 on 201. */
int th_product_create(th_server *s, const char *name, const char *domain, size_t dim,
                      const char *metric, const char *compartments_csv,
                      const char *prov_required_csv);
/* Admin creates a draft version. 0 on 201. */
int th_version_create(th_server *s, const char *product, const char *version);
/* Admin adds a batch (chunks: a cJSON array, borrowed). 0 on 200; accepted/unchanged may be
 * NULL. */
int th_chunks_add(th_server *s, const char *product, const char *version, const cJSON *chunks,
                  long *accepted, long *unchanged);
/* Admin publishes; published_at_out (may be NULL, >= 40 bytes) gets the published_at value. */
int th_publish(th_server *s, const char *product, const char *version, char *published_at_out);
int th_retire(th_server *s, const char *product, const char *version);
/* Admin grants; exactly one of product/domain non-NULL. id_out (may be NULL, >= 128 bytes). */
int th_grant(th_server *s, const char *principal, const char *product, const char *domain,
             const char *purposes_csv, const char *clearance, const char *compartments_csv,
             char *id_out);
/* Admin suppresses; kind is "subject", "document_id" or "chunk_id". 0 on 201. */
int th_suppress(th_server *s, const char *product, const char *kind, const char *value);

/* Builds one chunk object (owned). Any of the provenance strings may be NULL (omitted);
 * created_at NULL omits it; conf NULL omits "labels" entirely. */
cJSON *th_chunk_new(const char *id, const char *text, const float *vec, size_t dim,
                    const char *conf, const char *compartments_csv, const char *source_system,
                    const char *document_id, const char *section, const char *subject,
                    const char *created_at);

/* Brute-force score of v for query q: cosine similarity of the raw vectors ("cosine"), dot
 * product ("ip") or Euclidean distance ("l2"), computed in double. */
double th_score(const char *metric, const float *q, const float *v, size_t dim);
/* 1 if metric ranks score a before score b (higher similarity, lower distance). */
int th_better(const char *metric, double a, double b);
/* 1 if s is "sha256:" followed by 64 lowercase hex digits (prefix optional if allow_bare). */
int th_is_sha256(const char *s, int allow_bare);

/* A fresh random-ish seed from the clock and pid. */
unsigned long long th_seed_from_env(const char *env_name);

#endif
