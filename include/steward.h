/* steward.h - the public C API of Steward's embeddable core.
 *
 * Steward is a governed retrieval index: domain teams publish immutable, versioned snapshots
 * of embedded chunks ("products"), RAG pipelines query them and get only the chunks their
 * principal is entitled to see for the stated purpose of use, and every answer leaves an
 * audit receipt.  The HTTP server (src/http.c) and the CLI (src/main.c, ingest/) are thin users
 * of this header; nothing here knows about HTTP.
 *
 * Conventions used by every function below:
 *  - Return STW_OK or an stw_code; on failure *err is filled (code, snake_case name, message
 *    naming the field) and outputs are left untouched.  A failed call changes nothing stored.
 *  - `caller` is the authenticated principal making the call; the function checks its roles.
 *  - Ownership: "Owned" results are freed by the named *_free function (which accepts NULL);
 *    "Borrowed" pointers stay valid as long as said.  Strings are UTF-8, NUL-terminated.
 *  - Times are int64 Unix milliseconds (UTC); STW_TIME_NONE means "absent".
 *  - Thread: every function taking an stw_db may be called from any thread concurrently,
 *    unless stated otherwise; stw_open/stw_close are not concurrent with anything.
 */
#ifndef STEWARD_H
#define STEWARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------------------ */

typedef enum stw_code {
    STW_OK = 0,
    STW_INVALID,         /* 400: malformed input, wrong type, bad dimension, NaN, k range */
    STW_UNAUTHENTICATED, /* 401: no key, unknown key */
    STW_FORBIDDEN,       /* 403: role does not allow the call; not_entitled */
    STW_NOT_FOUND,       /* 404: unknown product, version, principal, grant, query id */
    STW_METHOD,          /* 405: wrong method on a known route (HTTP layer only) */
    STW_CONFLICT,        /* 409: exists already; chunk re-sent with other content; not a draft */
    STW_GONE,            /* 410: the version a rule resolves to is retired */
    STW_TOO_LARGE,       /* 413: body or batch over a configured limit */
    STW_UNPROCESSABLE,   /* 422: publish-time validation against the contract failed */
    STW_UNAVAILABLE,     /* 503: the audit record (or another write) could not be made durable */
    STW_NOMEM,           /* 503 */
    STW_STORE,           /* 500: SQLite failed unexpectedly */
    STW_INDEX,           /* 500: vector index failure */
    STW_INTERNAL         /* 500 */
} stw_code;

#define STW_ERR_NAME_MAX    48
#define STW_ERR_MSG_MAX     1024
#define STW_ERR_PROBLEMS    16
#define STW_ERR_PROBLEM_MAX 200

typedef struct stw_error {
    stw_code code;
    char name[STW_ERR_NAME_MAX]; /* snake_case error code for the API, e.g. "not_entitled" */
    char message[STW_ERR_MSG_MAX];
    /* 422 only: every problem found, each also joined into message */
    size_t nproblems;
    char problems[STW_ERR_PROBLEMS][STW_ERR_PROBLEM_MAX];
} stw_error;

/* Fills err (may be NULL) and returns code. name is the API's snake_case error code. */
stw_code stw_errorf(stw_error *err, stw_code code, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Static name of a code ("invalid", "not_found", ...). */
const char *stw_code_name(stw_code code);

/* ---- limits and shared enums ------------------------------------------------------------- */

#define STW_NAME_MAX       64  /* product, principal, domain, version names (bytes, no NUL) */
#define STW_ID_MAX         256 /* chunk ids, provenance values, suppression values */
#define STW_LABEL_MAX      32  /* a compartment label */
#define STW_MAX_LABELS     32  /* compartments per contract, grant or chunk */
#define STW_MAX_PROV_REQ   16  /* provenance_required fields per contract */
#define STW_MAX_DOMAINS    16  /* domains per principal */
#define STW_KEY_MAX        96  /* buffer size for an API key, including NUL */
#define STW_HASH_STR_MAX   72  /* "sha256:" + 64 hex + NUL */
#define STW_QUERY_ID_MAX   40
#define STW_TIME_NONE      INT64_MIN

enum stw_role {
    STW_ROLE_ADMIN = 1u << 0,
    STW_ROLE_OWNER = 1u << 1,
    STW_ROLE_CONSUMER = 1u << 2,
    STW_ROLE_AUDITOR = 1u << 3
};

/* HL7 v3 PurposeOfUse codes; purposes are sets of these bits. */
enum stw_purpose {
    STW_PURPOSE_TREAT = 0,
    STW_PURPOSE_ETREAT,
    STW_PURPOSE_HPAYMT,
    STW_PURPOSE_HOPERAT,
    STW_PURPOSE_HRESCH,
    STW_PURPOSE_PUBHLTH,
    STW_PURPOSE_HMARKT,
    STW_PURPOSE_COVERAGE,
    STW_PURPOSE_HLEGAL,
    STW_PURPOSE_COUNT
};

/* HL7 confidentiality, ordered U < L < M < N < R < V (values 0..5). */
enum stw_conf { STW_CONF_U = 0, STW_CONF_L, STW_CONF_M, STW_CONF_N, STW_CONF_R, STW_CONF_V };

enum stw_metric { STW_METRIC_COSINE = 0, STW_METRIC_IP, STW_METRIC_L2 };

enum stw_version_state { STW_DRAFT = 0, STW_PUBLISHED, STW_RETIRED };

/* Parsers and names for the enums: -1 / NULL when unknown. */
int stw_purpose_parse(const char *s);
const char *stw_purpose_name(int purpose);
int stw_conf_parse(const char *s);
const char *stw_conf_name(int conf);
int stw_metric_parse(const char *s);
const char *stw_metric_name(int metric);
int stw_role_parse(const char *s); /* one role bit, or -1 */
const char *stw_role_name(unsigned role_bit);
const char *stw_state_name(int state);
/* RFC 3339 UTC <-> ms.  Parse accepts "Z" or an offset; returns 0 on success. */
int stw_time_parse(const char *s, int64_t *ms_out);
void stw_time_format(int64_t ms, char out[32]); /* "2026-11-23T01:02:03.456Z" */
/* Name rules: product/principal/domain names [a-z0-9][a-z0-9-]{0,63} (principals and domains
 * may also use '.' and '_'), version names [A-Za-z0-9._-]{1,64}. 1 if valid. */
int stw_valid_name(const char *s);
int stw_valid_principal_name(const char *s);
int stw_valid_version_name(const char *s);

/* ---- open / close ------------------------------------------------------------------------ */

typedef struct stw_db stw_db;

/* Minimum necessary, per purpose of use (docs/policy.md): which chunk text a purpose may
 * receive, and its own cap on k. */
enum stw_text_rule {
    STW_TEXT_ALL = 0,      /* text from every product */
    STW_TEXT_DEIDENTIFIED, /* text only from products marked de-identified */
    STW_TEXT_NONE          /* ids, provenance, labels and scores only */
};

typedef struct stw_purpose_rule {
    size_t max_k; /* 0: only the global max_k applies */
    int text;     /* enum stw_text_rule */
} stw_purpose_rule;

typedef struct stw_options {
    size_t max_k;           /* default 1000 */
    size_t max_batch;       /* chunks per batch, default 10000 */
    size_t max_dimension;   /* default 4096 */
    size_t pool_size;       /* SQLite connections, default 8 */
    int audit_sync_full;    /* 1: synchronous=FULL for every commit; default 0 (NORMAL, WAL) */
    /* vector index and search planner (docs/search.md gives the measurements behind them) */
    size_t hnsw_min_rows;        /* versions with >= this many rows get an HNSW graph; 0 never */
    size_t hnsw_m;               /* graph degree M, default 32 */
    size_t hnsw_ef_construction; /* default 128 */
    size_t hnsw_ef;              /* first efSearch rung, default 64 (doubled up to hnsw_ef_max) */
    size_t hnsw_ef_max;          /* default 512 */
    size_t exact_max_rows;       /* allow-sets up to this size are always scanned exactly */
    double hnsw_min_selectivity; /* allow-sets below this fraction of a version: exact */
    int strategy;                /* enum stw_strategy: auto, or force one (tests, benchmarks) */
    double two_hop_below;        /* ACORN-1 graph walk for allow-sets below this fraction */
    size_t quantized_min_rows;   /* scans of >= this many rows use the 8-bit first pass (with
                                  * an exact re-score); 0 never. Auto strategy only */
    size_t binary_min_rows;      /* scans of >= this many rows take a 1-bit pass before the
                                  * 8-bit one; 0 never. Auto strategy only */
    double scan_max_share;       /* with the 1-bit pass, allow-sets up to this fraction of a
                                  * version are scanned, not searched in the graph; default 0.1 */
    size_t cells_max;            /* versions with an HNSW graph are also cut into k-means cells,
                                  * one per 100 rows up to this many (2000); 0 never */
    double cells_min_share;      /* allow-sets of at least this fraction of a version with cells
                                  * take the cell scan (exact bounds; auto only); 0.05 */
    size_t rows_memory_max;      /* a version's rows file (chunk text and provenance) up to this
                                  * many bytes is read into memory, on 2 MB pages, when the
                                  * version loads; a larger one is mapped from disk (its pages
                                  * fault in as answers touch them). 0: always mapped.
                                  * Default 1 GiB */
    int walk_blocks_off;         /* 1: graph versions load without the walk's blocks (their
                                  * 8-bit records and level-0 lists in row order, 704 bytes a
                                  * row at d = 384 and M = 32) and walk in float. Default 0 */
    stw_purpose_rule purpose_rules[STW_PURPOSE_COUNT]; /* indexed by enum stw_purpose */
    /* Benchmarks only (bench/bench_audit.c measures the cost of receipts): 1 makes
     * stw_query_run answer without writing its receipt, event and disclosures. Named so that
     * a zero-filled struct keeps receipts on; `steward serve` never sets it. Default 0. */
    int audit_receipts_off;
} stw_options;

/* Parse one rule "PURPOSE:k=N,text=all|deidentified|none" (either part optional) into opt.
 * 0 on success, -1 if malformed. */
int stw_purpose_rule_parse(stw_options *opt, const char *spec);

enum stw_strategy {
    STW_STRATEGY_AUTO = 0,
    STW_STRATEGY_EXACT,
    STW_STRATEGY_HNSW,
    STW_STRATEGY_CELLS /* the cell scan wherever a version has cells (else as auto, unquantised) */
};

/* Defaults for every option. */
void stw_options_default(stw_options *opt);

/* Create an empty store in data_dir (created if missing; must not already hold a store) with
 * one principal "admin" (roles admin) and write its new API key to key_out. The key is shown
 * only here; only its hash is stored. */
stw_code stw_init(const char *data_dir, char key_out[STW_KEY_MAX], stw_error *err);

/* Open an existing store (runs pending migrations, removes leftover temporary publish folders).
 * Owned: close with stw_close(). opt may be NULL for defaults. */
stw_code stw_open(const char *data_dir, const stw_options *opt, stw_db **out, stw_error *err);
void stw_close(stw_db *db);

/* ---- principals -------------------------------------------------------------------------- */

typedef struct stw_principal {
    char id[STW_NAME_MAX + 1];
    unsigned roles; /* enum stw_role bits */
    size_t ndomains;
    char domains[STW_MAX_DOMAINS][STW_NAME_MAX + 1];
} stw_principal;

/* Resolve an API key to its principal (constant-time compare of the key's hash).
 * STW_UNAUTHENTICATED for a malformed or unknown key. Records auth_failed in the audit trail. */
stw_code stw_authenticate(stw_db *db, const char *api_key, stw_principal *out, stw_error *err);

/* Admin only. Creates p (id, roles, domains) and writes its new API key to key_out.
 * 409 if the id exists. */
stw_code stw_principal_create(stw_db *db, const stw_principal *caller, const stw_principal *p,
                              char key_out[STW_KEY_MAX], stw_error *err);

/* ---- policy: grants and suppressions ----------------------------------------------------- */

typedef struct stw_grant {
    char id[STW_NAME_MAX + 1];                 /* output of create: "g_..." */
    char principal[STW_NAME_MAX + 1];
    char product[STW_NAME_MAX + 1];            /* exactly one of product, domain is non-empty */
    char domain[STW_NAME_MAX + 1];
    uint32_t purposes;                         /* bit (1u << enum stw_purpose) */
    int clearance;                             /* enum stw_conf */
    size_t ncompartments;
    char compartments[STW_MAX_LABELS][STW_LABEL_MAX + 1];
    int64_t created_ms;
} stw_grant;

enum stw_supp_kind { STW_SUPP_SUBJECT = 0, STW_SUPP_DOCUMENT, STW_SUPP_CHUNK };

typedef struct stw_suppression {
    char id[STW_NAME_MAX + 1]; /* output of create: "s_..." */
    char product[STW_NAME_MAX + 1];
    int kind;                  /* enum stw_supp_kind */
    char value[STW_ID_MAX + 1];
    char reason[STW_ID_MAX + 1];
    int64_t created_ms;
} stw_suppression;

/* Admin only. g->id and *policy_version_out are set on success. 404 unknown principal/product. */
stw_code stw_grant_create(stw_db *db, const stw_principal *caller, stw_grant *g,
                          int64_t *policy_version_out, stw_error *err);
stw_code stw_grant_revoke(stw_db *db, const stw_principal *caller, const char *grant_id,
                          int64_t *policy_version_out, stw_error *err);
/* Admin only. Takes effect on the next query, in every version of the product. */
stw_code stw_suppression_create(stw_db *db, const stw_principal *caller, stw_suppression *s,
                                int64_t *policy_version_out, stw_error *err);

/* Admin only. Lifts an active suppression (a recorded policy change); 404 if none. */
stw_code stw_suppression_lift(stw_db *db, const stw_principal *caller, const char *suppression_id,
                              int64_t *policy_version_out, stw_error *err);

typedef struct stw_policy {
    int64_t version;
    char hash[STW_HASH_STR_MAX]; /* "sha256:..." over the canonical form (docs/policy.md) */
    size_t ngrants;
    stw_grant *grants;
    size_t nsuppressions;
    stw_suppression *suppressions;
} stw_policy;

/* Admin or auditor. Owned: free with stw_policy_free(). */
stw_code stw_policy_get(stw_db *db, const stw_principal *caller, stw_policy **out,
                        stw_error *err);
void stw_policy_free(stw_policy *p);

/* ---- catalog: products and versions ------------------------------------------------------ */

typedef struct stw_contract {
    char embedding_model[STW_NAME_MAX * 2 + 1];
    size_t dimension;
    int metric; /* enum stw_metric */
    size_t ncompartments;
    char compartments[STW_MAX_LABELS][STW_LABEL_MAX + 1];
    size_t nprovenance_required;
    char provenance_required[STW_MAX_PROV_REQ][STW_LABEL_MAX + 1];
} stw_contract;

typedef struct stw_product {
    char name[STW_NAME_MAX + 1];
    char domain[STW_NAME_MAX + 1];
    char owner[STW_NAME_MAX + 1];
    char *description; /* owned by the struct when returned by the library; may be NULL */
    char *terms;       /* terms of use; may be NULL */
    int deidentified;  /* 1 if the product holds de-identified data only */
    stw_contract contract;
    int64_t created_ms;
    /* read-only summary, filled by get/list */
    size_t nversions;
    char latest[STW_NAME_MAX + 1]; /* newest published, not retired, version; "" if none */
} stw_product;

typedef struct stw_version_info {
    char product[STW_NAME_MAX + 1];
    char name[STW_NAME_MAX + 1];
    int state; /* enum stw_version_state */
    size_t chunks;
    char content_hash[STW_HASH_STR_MAX]; /* "" until published */
    int64_t created_ms, published_ms, retired_ms;
} stw_version_info;

/* Admin, or owner whose domains include p->domain. 409 if the name exists. */
stw_code stw_product_create(stw_db *db, const stw_principal *caller, const stw_product *p,
                            stw_error *err);
/* Any authenticated principal. Owned: stw_products_free(). */
stw_code stw_product_get(stw_db *db, const stw_principal *caller, const char *name,
                         stw_product **out, stw_error *err);
stw_code stw_product_list(stw_db *db, const stw_principal *caller, stw_product **out,
                          size_t *n_out, stw_error *err);
void stw_products_free(stw_product *p, size_t n);

/* Admin or owner of the product's domain. Creates a draft. 409 if the version exists. */
stw_code stw_version_create(stw_db *db, const stw_principal *caller, const char *product,
                            const char *version, stw_version_info *out, stw_error *err);
stw_code stw_version_get(stw_db *db, const stw_principal *caller, const char *product,
                         const char *version, stw_version_info *out, stw_error *err);
/* Owned: free(). Oldest first. */
stw_code stw_version_list(stw_db *db, const stw_principal *caller, const char *product,
                          stw_version_info **out, size_t *n_out, stw_error *err);

/* One chunk as given by a producer. All pointers are borrowed for the call. */
typedef struct stw_chunk {
    const char *id;
    const char *text;
    const float *vector;
    size_t dim;
    int confidentiality; /* enum stw_conf, or -1 if the chunk carried no labels */
    size_t ncompartments;
    const char *const *compartments;
    /* provenance fields (NULL if absent) */
    const char *source_system, *record_id, *document_id, *section, *subject;
    int64_t created_ms;           /* STW_TIME_NONE if absent */
    const char *provenance_json;  /* the provenance object as JSON text, or NULL */
    const char *metadata_json;    /* the metadata object as JSON text, or NULL */
} stw_chunk;

/* Admin or owner. Adds a batch atomically to a draft: all or none. Identical re-sends count as
 * unchanged; a re-sent id with other content is 409 and nothing of the batch is stored. */
stw_code stw_chunks_add(stw_db *db, const stw_principal *caller, const char *product,
                        const char *version, const stw_chunk *chunks, size_t n,
                        size_t *accepted_out, size_t *unchanged_out, stw_error *err);

/* Admin or owner. Validates against the contract (422 listing every problem), writes the
 * version's files (crash-safe: temp folder, fsync, rename) and flips it to published. */
stw_code stw_version_publish(stw_db *db, const stw_principal *caller, const char *product,
                             const char *version, stw_version_info *out, stw_error *err);
stw_code stw_version_retire(stw_db *db, const stw_principal *caller, const char *product,
                            const char *version, stw_version_info *out, stw_error *err);
/* Admin, auditor, or owner of the product's domain. Re-derives a published or retired version
 * from the store and checks its files (docs/versions.md): every chunk hash and the content
 * hash recomputed, against the versions row and the manifest; vectors.f32 size, SHA-256 and
 * each row against the stored vector; hnsw.faiss (if any) loads with the right rows. Problems
 * are reported, not returned as errors: *json_out is
 * {"ok":bool,"product","version","state","chunks","content_hash","problems":["..."]} and
 * *ok_out is 1 when problems is empty. Owned: free(). 404 unknown product or version, 409
 * version_not_published for a draft. Reads a snapshot; O(chunks) time, O(dimension) memory
 * plus the graph when there is one. */
stw_code stw_version_verify(stw_db *db, const stw_principal *caller, const char *product,
                            const char *version, char **json_out, int *ok_out, stw_error *err);

/* ---- query ------------------------------------------------------------------------------- */

typedef struct stw_product_ref {
    const char *product;
    const char *version; /* pinned version name, or NULL */
    int64_t as_of_ms;    /* STW_TIME_NONE unless "as_of" */
} stw_product_ref;

typedef struct stw_filter {
    const char *subject; /* NULL: any */
    size_t nsource_systems;
    const char *const *source_systems;
    size_t nsections;
    const char *const *sections;
    int64_t created_from; /* inclusive; STW_TIME_NONE: open */
    int64_t created_to;   /* exclusive; STW_TIME_NONE: open */
} stw_filter;

enum stw_include {
    STW_INC_TEXT = 1u << 0,
    STW_INC_LABELS = 1u << 1,
    STW_INC_PROVENANCE = 1u << 2,
    STW_INC_METADATA = 1u << 3,
    STW_INC_ALL = 15u
};

typedef struct stw_query {
    const float *vector;
    size_t dim;
    size_t k;
    int purpose; /* enum stw_purpose */
    size_t nproducts;
    const stw_product_ref *products;
    stw_filter filter;
    unsigned include;          /* enum stw_include bits */
    int explain;
    const char *reason;        /* free text (break-glass); may be NULL */
    const char *filter_json;   /* the filter as the caller sent it, for the receipt; may be NULL */
    int k_default;             /* 1: the caller did not choose k; a purpose's lower cap applies */
} stw_query;

typedef struct stw_result {
    size_t rank; /* 1-based */
    double score;
    char product[STW_NAME_MAX + 1];
    char version[STW_NAME_MAX + 1];
    char *chunk_id;
    /* Each NULL when not included: */
    char *text;
    char *labels_json;     /* {"confidentiality":"N","compartments":[...]} */
    char *provenance_json; /* the provenance object */
    char *metadata_json;   /* the metadata object ({} if none) */
} stw_result;

typedef struct stw_plan_step {
    char product[STW_NAME_MAX + 1];
    char version[STW_NAME_MAX + 1];
    const char *strategy; /* static string: "exact", "hnsw", ... */
    size_t allowed;       /* rows visible to this request in this version */
    size_t scanned;       /* allowed rows whose distance was computed (never hidden rows) */
    int ef;               /* efSearch used, 0 for exact */
    /* The version's size, for the operator's metrics (the allow-set's share). Not for
     * callers: it counts rows the caller may not see, so the answer never renders it. */
    size_t rows;
} stw_plan_step;

typedef struct stw_version_ref {
    char product[STW_NAME_MAX + 1];
    char version[STW_NAME_MAX + 1];
} stw_version_ref;

typedef struct stw_answer {
    char query_id[STW_QUERY_ID_MAX];
    int64_t policy_version;
    int complete;
    size_t nversions;
    stw_version_ref *versions;
    size_t nresults;
    stw_result *results;
    size_t nplan; /* one per version searched (rendered only for "explain":true) */
    stw_plan_step *plan;
    int text_withheld; /* 1 if the purpose's minimum-necessary rule withheld some chunk text */
    double receipt_ms; /* time the receipt took to be durable (0 with receipts off); metrics */
} stw_answer;

/* The receipt journal (docs/audit.md#the-receipt-journal): receipts appended to it, written
 * into the trail (indexed) or found there already (skipped, after a restart), the bytes
 * appended and not yet written in, and the indexer's busy time. journal is 0 when receipts are
 * committed synchronously (another process owns the journal, or audit_sync_full). */
typedef struct stw_receipt_stats {
    int journal;
    unsigned long long appended, indexed, skipped, batches, backlog_bytes;
    double index_seconds;
} stw_receipt_stats;
void stw_receipt_stats_get(stw_db *db, stw_receipt_stats *out);

/* Consumer or admin. Resolves each product's version rule, applies the access rule of
 * docs/architecture (grants x labels x suppressions x filter), searches, merges into one
 * ranking, and makes the audit receipt durable before returning (appended to the receipt
 * journal, or committed when this handle does not own the journal: docs/audit.md). 403 not_entitled names the first
 * product that no grant covers for the purpose; 410 if a rule resolves to a retired version.
 * Owned: stw_answer_free(). */
stw_code stw_query_run(stw_db *db, const stw_principal *caller, const stw_query *q,
                       stw_answer **out, stw_error *err);
void stw_answer_free(stw_answer *a);

/* ---- audit ------------------------------------------------------------------------------- */

/* The governance reads below (stw_audit_*, stw_usage) first wait until every receipt this
 * handle journaled is in the trail (STW_UNAVAILABLE "audit_unavailable" after 10 s: the store
 * is locked or failing; docs/audit.md#the-receipt-journal).
 *
 * Auditor or admin. The stored receipt of one query as a JSON object (docs/api.md).
 * Owned: free(). 404 unknown query id. */
stw_code stw_audit_query_get(stw_db *db, const stw_principal *caller, const char *query_id,
                             char **json_out, stw_error *err);

typedef struct stw_event_filter {
    int64_t since_ms, until_ms; /* STW_TIME_NONE: open */
    const char *principal;      /* NULL: any */
    const char *type;           /* NULL: any */
    int64_t after_seq;          /* cursor: events with seq > after_seq; 0 from the start */
    size_t limit;               /* 1..1000 */
} stw_event_filter;

/* Auditor or admin. A page of events as a JSON object {"events":[...],"next":"..."|null}.
 * Owned: free(). */
stw_code stw_audit_events(stw_db *db, const stw_principal *caller, const stw_event_filter *f,
                          char **json_out, stw_error *err);
/* Auditor or admin. {"ok":true,"events":N,"head":"sha256:..."} or ok:false with "first_bad_seq".
 * Owned: free(). */
stw_code stw_audit_verify(stw_db *db, const stw_principal *caller, char **json_out,
                          stw_error *err);

/* A pinned head: the chain's length and last hash, as printed by stw_audit_head and
 * `steward audit head`, kept by the auditor outside the data folder (docs/audit.md). */
typedef struct stw_audit_pin {
    int64_t events;              /* events in the chain when pinned (>= 1) */
    char head[STW_HASH_STR_MAX]; /* "sha256:...": the hash of event `events` */
} stw_audit_pin;

/* Auditor or admin. The chain's current head, read without verifying it:
 * {"events":N,"head":"sha256:..."} (an empty chain gives 0 and the all-zero genesis hash).
 * O(1): meant to be called often and stored elsewhere. Owned: free(). */
stw_code stw_audit_head(stw_db *db, const stw_principal *caller, char **json_out,
                        stw_error *err);
/* Auditor or admin. stw_audit_verify, and also against a pin taken earlier: a chain with fewer
 * than pin->events events, or whose event pin->events has another hash, is ok:false (the tail
 * was cut off or rewritten), with first_bad_seq the first missing event or pin->events. A valid
 * result carries "pin":{"events","head"}. pin NULL: the same as stw_audit_verify. STW_INVALID
 * for a malformed pin. Owned: free(). */
stw_code stw_audit_verify_pinned(stw_db *db, const stw_principal *caller,
                                 const stw_audit_pin *pin, char **json_out, stw_error *err);

/* Receives one line of an export (NUL-terminated, no newline; borrowed for the call).
 * Returns 0 to continue, non-zero to stop the export. */
typedef int (*stw_emit_fn)(void *ctx, const char *line);
/* Auditor or admin. Every audit event with since_ms <= at < until_ms (STW_TIME_NONE: open), in
 * seq order, as one FHIR R4 AuditEvent resource per emit call (docs/audit.md gives the
 * mapping, in the spirit of IHE BALP): queries carry the caller and purposeOfUse, one entity
 * per returned chunk, one Patient entity per subject, and the query with its policy version.
 * Every resource carries its chain fields, so the export can be re-verified on its own. Never
 * chunk text or vectors. Reads one snapshot; the store stays writable meanwhile.
 * STW_UNAVAILABLE ("export_stopped") if emit returned non-zero. Thread: emit runs on the
 * calling thread. */
stw_code stw_audit_export_fhir(stw_db *db, const stw_principal *caller, int64_t since_ms,
                               int64_t until_ms, stw_emit_fn emit, void *ctx, stw_error *err);
/* Auditor or admin. Accounting of disclosures for one subject, as JSON. Owned: free(). */
stw_code stw_audit_disclosures(stw_db *db, const stw_principal *caller, const char *subject,
                               int64_t since_ms, int64_t until_ms, char **json_out,
                               stw_error *err);
/* Auditor or admin. group_by: "principal", "product" or "purpose". Owned: free(). */
stw_code stw_usage(stw_db *db, const stw_principal *caller, const char *group_by,
                   int64_t since_ms, int64_t until_ms, char **json_out, stw_error *err);

#ifdef __cplusplus
}
#endif
#endif /* STEWARD_H */
