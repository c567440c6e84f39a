/* json.h - cJSON <-> the request and response structs of include/steward.h.
 *
 * Used by http.c and by the bulk ingest CLI, so both validate a chunk the same way.
 * Every parser checks shape only (types, lengths, name syntax, finite numbers, k range); the
 * core checks meaning (dimension against the contract, roles, entitlements).
 *
 * Errors: every parser returns STW_OK or STW_INVALID (STW_TOO_LARGE for a batch over the cap)
 * and fills *err with a snake_case code and a message naming the field, e.g.
 *     "not_finite"  "chunks[3].vector[17] is not a finite number"
 * Codes used: malformed_json, missing_field, missing_labels, wrong_type, wrong_dimension (an
 * empty vector only; the core checks the contract's dimension), not_finite, unknown_purpose,
 * unknown_role, unknown_metric, unknown_confidentiality, unknown_field (filter keys only),
 * k_out_of_range, out_of_range, invalid_name, invalid_time, invalid_value (empty string or list,
 * unknown include), too_long, too_many, conflicting_fields, batch_too_large (STW_TOO_LARGE) and
 * out_of_memory (STW_NOMEM). Messages name fields, never echo values (a value may be PHI).
 *
 * Ownership: parsed structs borrow strings from the cJSON tree they were parsed from, so the
 * tree must outlive them; what cannot be borrowed (float vectors, pointer arrays, re-printed
 * JSON text, split names) lives in a *_hold struct released with the matching *_release().
 * A failing parser frees whatever it built and leaves its outputs zeroed.
 * Render functions return an owned cJSON tree (cJSON_Delete), or NULL when out of memory.
 *
 * Thread: every function is reentrant; none keeps state.
 */
#ifndef STW_JSON_H
#define STW_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "steward.h"

/* ---- request bodies ---------------------------------------------------------------------- */

/* Parses text (NUL-terminated, len bytes before the NUL) as one JSON object. Trailing bytes
 * after the value, a NUL byte (raw, or escaped as \u0000, which C strings would silently cut
 * at) or an empty body are 400 malformed_json; a non-object is 400 wrong_type.
 * Owned: *out, free with cJSON_Delete(). */
stw_code json_parse_body(const char *text, size_t len, cJSON **out, stw_error *err);

/* Storage one parsed stw_chunk borrows from, besides its cJSON tree. */
struct json_chunk_hold {
    float *vector;             /* owned */
    const char **compartments; /* owned array; the strings are borrowed from the tree */
    char *provenance_json;     /* owned (cJSON_free) */
    char *metadata_json;       /* owned (cJSON_free) */
};

/* One CHUNK object (api.md) into *out. `where` prefixes field names in messages ("chunks[3]",
 * "line 17"); may be "" for none. A chunk without "labels" gets confidentiality -1, which the
 * core rejects (fail closed). Borrowed: out's strings point into obj. */
stw_code json_parse_chunk(const cJSON *obj, const char *where, stw_chunk *out,
                          struct json_chunk_hold *hold, stw_error *err);
/* NULL is a no-op; leaves *hold zeroed. */
void json_chunk_hold_release(struct json_chunk_hold *hold);

/* A whole ingest body {"chunks":[CHUNK,...]}. */
struct json_chunk_batch {
    size_t n;
    stw_chunk *chunks;             /* owned array of n; borrows from holds[] and the tree */
    struct json_chunk_hold *holds; /* owned array of n */
};

/* More than max_batch chunks is 413 batch_too_large. Borrowed: strings point into body. */
stw_code json_parse_chunk_batch(const cJSON *body, size_t max_batch, struct json_chunk_batch *out,
                                stw_error *err);
void json_chunk_batch_release(struct json_chunk_batch *b);

/* Storage one parsed stw_query borrows from, besides its cJSON tree. */
struct json_query_hold {
    float *vector;             /* owned */
    stw_product_ref *products; /* owned array */
    char **names;              /* owned: copies of split "name@version" strings */
    size_t nnames;
    const char **source_systems; /* owned array; strings borrowed from the tree */
    const char **sections;       /* owned array; strings borrowed from the tree */
    char *filter_json;           /* owned (cJSON_free) */
};

/* A query body (api.md "Query") into *out; k must be 1..max_k (default 10). include defaults to
 * STW_INC_ALL. Borrowed: out's strings point into body or hold. */
stw_code json_parse_query(const cJSON *body, size_t max_k, stw_query *out,
                          struct json_query_hold *hold, stw_error *err);
void json_query_hold_release(struct json_query_hold *hold);

/* A product body (api.md "Products") into *out. dimension must be 1..max_dimension.
 * Borrowed: out->description and out->terms point into body (or are NULL). */
stw_code json_parse_product(const cJSON *body, size_t max_dimension, stw_product *out,
                            stw_error *err);
/* {"id","roles","domains"} into *out (all copied). */
stw_code json_parse_principal(const cJSON *body, stw_principal *out, stw_error *err);
/* {"principal","product"|"domain","purposes","clearance","compartments"} into *out (copied). */
stw_code json_parse_grant(const cJSON *body, stw_grant *out, stw_error *err);
/* {"product", exactly one of "subject"|"document_id"|"chunk_id", "reason"} into *out (copied). */
stw_code json_parse_suppression(const cJSON *body, stw_suppression *out, stw_error *err);
/* {"version":"..."}: writes the version name (validated) to out. */
stw_code json_parse_version_create(const cJSON *body, char out[STW_NAME_MAX + 1], stw_error *err);

/* ---- responses --------------------------------------------------------------------------- */

cJSON *json_render_product(const stw_product *p);
cJSON *json_render_version(const stw_version_info *v);
cJSON *json_render_grant(const stw_grant *g);
cJSON *json_render_suppression(const stw_suppression *s);
cJSON *json_render_policy(const stw_policy *p);
/* {"id","roles","domains"} plus "api_key" when api_key is non-NULL. */
cJSON *json_render_principal(const stw_principal *p, const char *api_key);
/* The query response of api.md: query_id, policy_version, complete, versions, results (with
 * text/labels/provenance/metadata only where non-NULL), plan only when with_plan.
 * Stored label/provenance/metadata JSON that fails to parse is a broken invariant:
 * NULL with STW_INTERNAL. */
cJSON *json_render_answer(const stw_answer *a, int with_plan, stw_error *err);
/* {"error":{"code":name,"message":...}} plus "problems":[...] when err->nproblems > 0.
 * An empty err->name falls back to stw_code_name(err->code). */
cJSON *json_render_error(const stw_error *err);

/* RFC 3339 text of ms as a cJSON string, or JSON null for STW_TIME_NONE. */
cJSON *json_render_time(int64_t ms);

#endif
