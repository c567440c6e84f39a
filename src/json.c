/* json.c - cJSON <-> steward.h structs (see json.h for the contract).
 *
 * Shape checks only: the core owns meaning. Three rules hold everywhere below:
 *  - Every JSON number becomes a C number in exactly one of two functions, json_number_to_int
 *    and json_number_to_float, each one range test that NaN, infinities, fractions (for
 *    integers) and out-of-range values all fail.
 *  - Every error names the field by its path ("chunks[3].vector[17]") and never echoes the
 *    value: a value may be PHI, and messages reach logs and clients.
 *  - Arrays are walked with cJSON_ArrayForEach (cJSON_GetArrayItem is O(i), which makes a
 *    4096-element vector quadratic).
 */
#include "json.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"

#define FIELD_MAX 160 /* one field path, e.g. "chunks[9999].labels.compartments[31]" */

/* ---- numbers: the only two conversions ------------------------------------------------- */

/* 1 and *out set if v is a number that is an integer in lo..hi (|lo|,|hi| <= 2^53). */
static int json_number_to_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;

    if (!(d >= (double)lo && d <= (double)hi && d == floor(d)))
        return 0;
    *out = (int64_t)d;
    return 1;
}

/* 1 and *out set if v is a number representable as a finite float. Checked before the cast:
 * converting an out-of-range double to float is undefined behaviour. */
static int json_number_to_float(const cJSON *v, float *out)
{
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;

    if (!(d >= -(double)FLT_MAX && d <= (double)FLT_MAX))
        return 0;
    *out = (float)d;
    return 1;
}

/* ---- field helpers ---------------------------------------------------------------------- */

/* "where.key", "where" (key NULL), or "key" (where empty). */
static const char *fld(char buf[FIELD_MAX], const char *where, const char *key)
{
    int w;

    /* A path longer than FIELD_MAX is cut; it only feeds a message. */
    if (where == NULL || where[0] == '\0')
        w = snprintf(buf, FIELD_MAX, "%s", key != NULL ? key : "body");
    else if (key == NULL)
        w = snprintf(buf, FIELD_MAX, "%s", where);
    else
        w = snprintf(buf, FIELD_MAX, "%s.%s", where, key);
    if (w < 0)
        buf[0] = '\0';
    return buf;
}

/* Treats JSON null like an absent key. */
static const cJSON *get(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsNull(v) ? NULL : v;
}

static stw_code missing(stw_error *err, const char *where, const char *key)
{
    char f[FIELD_MAX];

    return stw_errorf(err, STW_INVALID, "missing_field", "%s is missing", fld(f, where, key));
}

/* A string value (1..maxlen bytes) at obj.key into *out (borrowed), NULL when absent and not
 * required. */
static stw_code get_string(const cJSON *obj, const char *where, const char *key, int required,
                           size_t maxlen, const char **out, stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key);
    size_t len;

    *out = NULL;
    if (v == NULL)
        return required ? missing(err, where, key) : STW_OK;
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be a string",
                          fld(f, where, key));
    len = strlen(v->valuestring);
    if (len == 0)
        return stw_errorf(err, STW_INVALID, "invalid_value", "%s must not be empty",
                          fld(f, where, key));
    if (len > maxlen)
        return stw_errorf(err, STW_INVALID, "too_long", "%s is longer than %zu bytes",
                          fld(f, where, key), maxlen);
    *out = v->valuestring;
    return STW_OK;
}

/* Like get_string, copied into dst (dstsize > maxlen). Absent leaves dst "". */
static stw_code copy_string(const cJSON *obj, const char *where, const char *key, int required,
                            char *dst, size_t dstsize, stw_error *err)
{
    const char *s = NULL;
    stw_code rc;

    dst[0] = '\0';
    rc = get_string(obj, where, key, required, dstsize - 1, &s, err);
    if (rc == STW_OK && s != NULL)
        memcpy(dst, s, strlen(s) + 1);
    return rc;
}

/* Which name rule a name field follows. */
enum name_rule { NAME_PRODUCT, NAME_PRINCIPAL, NAME_VERSION };

static int name_ok(enum name_rule rule, const char *s)
{
    switch (rule) {
    case NAME_PRODUCT: return stw_valid_name(s);
    case NAME_PRINCIPAL: return stw_valid_principal_name(s);
    case NAME_VERSION: return stw_valid_version_name(s);
    }
    return 0;
}

static const char *name_rule_text(enum name_rule rule)
{
    switch (rule) {
    case NAME_PRODUCT: return "[a-z0-9][a-z0-9-]{0,63}";
    case NAME_PRINCIPAL: return "[a-z0-9][a-z0-9._-]{0,63}";
    case NAME_VERSION: return "[A-Za-z0-9._-]{1,64}";
    }
    return "";
}

/* A validated name at obj.key copied into dst[STW_NAME_MAX + 1]. */
static stw_code copy_name(const cJSON *obj, const char *where, const char *key, int required,
                          enum name_rule rule, char dst[STW_NAME_MAX + 1], stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key);

    dst[0] = '\0';
    if (v == NULL)
        return required ? missing(err, where, key) : STW_OK;
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be a string",
                          fld(f, where, key));
    if (strlen(v->valuestring) > STW_NAME_MAX || !name_ok(rule, v->valuestring))
        return stw_errorf(err, STW_INVALID, "invalid_name", "%s must match %s", fld(f, where, key),
                          name_rule_text(rule));
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return STW_OK;
}

/* Optional boolean at obj.key; *out untouched when absent. */
static stw_code get_bool(const cJSON *obj, const char *where, const char *key, int *out,
                         stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key);

    if (v == NULL)
        return STW_OK;
    if (!cJSON_IsBool(v))
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be true or false",
                          fld(f, where, key));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return STW_OK;
}

/* Optional RFC 3339 time at obj.key; *out = STW_TIME_NONE when absent. */
static stw_code get_time(const cJSON *obj, const char *where, const char *key, int64_t *out,
                         stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key);
    int64_t ms = 0;

    *out = STW_TIME_NONE;
    if (v == NULL)
        return STW_OK;
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be an RFC 3339 string",
                          fld(f, where, key));
    if (stw_time_parse(v->valuestring, &ms) != 0 || ms == STW_TIME_NONE)
        return stw_errorf(err, STW_INVALID, "invalid_time",
                          "%s is not an RFC 3339 time (e.g. 2026-10-30T14:05:00Z)",
                          fld(f, where, key));
    *out = ms;
    return STW_OK;
}

/* Optional object at obj.key; *out NULL when absent. */
static stw_code get_object(const cJSON *obj, const char *where, const char *key, const cJSON **out,
                           stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key);

    *out = NULL;
    if (v == NULL)
        return STW_OK;
    if (!cJSON_IsObject(v))
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be an object",
                          fld(f, where, key));
    *out = v;
    return STW_OK;
}

/* The array at obj.key (NULL when absent and optional), with at most max_items elements. */
static stw_code get_array(const cJSON *obj, const char *where, const char *key, int required,
                          size_t max_items, const cJSON **out, size_t *n_out, stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key);
    int n;

    *out = NULL;
    *n_out = 0;
    if (v == NULL)
        return required ? missing(err, where, key) : STW_OK;
    if (!cJSON_IsArray(v))
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be an array",
                          fld(f, where, key));
    n = cJSON_GetArraySize(v);
    if (n < 0 || (size_t)n > max_items)
        return stw_errorf(err, STW_INVALID, "too_many", "%s has more than %zu elements",
                          fld(f, where, key), max_items);
    *out = v;
    *n_out = (size_t)n;
    return STW_OK;
}

/* Element i of an array of strings, 1..maxlen bytes. */
static stw_code array_string(const cJSON *e, const char *where, const char *key, size_t i,
                             size_t maxlen, const char **out, stw_error *err)
{
    char f[FIELD_MAX];
    char fi[FIELD_MAX + 24];
    size_t len;

    snprintf(fi, sizeof fi, "%s[%zu]", fld(f, where, key), i);
    if (!cJSON_IsString(e) || e->valuestring == NULL)
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be a string", fi);
    len = strlen(e->valuestring);
    if (len == 0)
        return stw_errorf(err, STW_INVALID, "invalid_value", "%s must not be empty", fi);
    if (len > maxlen)
        return stw_errorf(err, STW_INVALID, "too_long", "%s is longer than %zu bytes", fi, maxlen);
    *out = e->valuestring;
    return STW_OK;
}

/* An optional array of label strings copied into dst[STW_MAX_LABELS][STW_LABEL_MAX + 1]. */
static stw_code copy_labels(const cJSON *obj, const char *where, const char *key,
                            char (*dst)[STW_LABEL_MAX + 1], size_t max_items, size_t *n_out,
                            stw_error *err)
{
    const cJSON *arr = NULL, *e;
    size_t n = 0, i = 0;
    stw_code rc;

    *n_out = 0;
    rc = get_array(obj, where, key, 0, max_items, &arr, &n, err);
    if (rc != STW_OK || arr == NULL)
        return rc;
    cJSON_ArrayForEach(e, arr)
    {
        const char *s = NULL;

        rc = array_string(e, where, key, i, STW_LABEL_MAX, &s, err);
        if (rc != STW_OK)
            return rc;
        memcpy(dst[i], s, strlen(s) + 1);
        i++;
    }
    *n_out = i;
    return STW_OK;
}

/* An optional array of strings (or, when allow_scalar, one string) as an owned array of
 * borrowed pointers; *out NULL when absent. */
static stw_code get_string_list(const cJSON *obj, const char *where, const char *key,
                                int allow_scalar, int allow_empty, size_t max_items, size_t maxlen,
                                const char ***out, size_t *n_out, stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key), *e;
    const char **list = NULL;
    size_t n, i = 0;
    stw_code rc = STW_OK;

    *out = NULL;
    *n_out = 0;
    if (v == NULL)
        return STW_OK;
    if (allow_scalar && cJSON_IsString(v)) {
        list = malloc(sizeof *list);
        if (list == NULL)
            return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        rc = get_string(obj, where, key, 1, maxlen, &list[0], err);
        if (rc != STW_OK) {
            free(list);
            return rc;
        }
        *out = list;
        *n_out = 1;
        return STW_OK;
    }
    if (!cJSON_IsArray(v))
        return stw_errorf(err, STW_INVALID, "wrong_type",
                          allow_scalar ? "%s must be a string or an array of strings"
                                       : "%s must be an array of strings",
                          fld(f, where, key));
    rc = get_array(obj, where, key, 1, max_items, &v, &n, err);
    if (rc != STW_OK)
        return rc;
    if (n == 0) {
        if (allow_empty)
            return STW_OK;
        return stw_errorf(err, STW_INVALID, "invalid_value", "%s must not be empty",
                          fld(f, where, key));
    }
    list = calloc(n, sizeof *list);
    if (list == NULL)
        return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
    cJSON_ArrayForEach(e, v)
    {
        rc = array_string(e, where, key, i, maxlen, &list[i], err);
        if (rc != STW_OK) {
            free(list);
            return rc;
        }
        i++;
    }
    *out = list;
    *n_out = n;
    return STW_OK;
}

/* A vector of finite numbers at obj.key into an owned float array. */
static stw_code get_vector(const cJSON *obj, const char *where, const char *key, float **out,
                           size_t *dim_out, stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = get(obj, key), *e;
    float *vec = NULL;
    size_t n, i = 0;
    int sz;

    *out = NULL;
    *dim_out = 0;
    if (v == NULL)
        return missing(err, where, key);
    if (!cJSON_IsArray(v))
        return stw_errorf(err, STW_INVALID, "wrong_type", "%s must be an array of numbers",
                          fld(f, where, key));
    sz = cJSON_GetArraySize(v);
    if (sz <= 0)
        return stw_errorf(err, STW_INVALID, "wrong_dimension", "%s is empty", fld(f, where, key));
    n = (size_t)sz;
    vec = malloc(n * sizeof *vec); /* n <= INT_MAX: no overflow in size_t */
    if (vec == NULL)
        return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsNumber(e)) {
            stw_errorf(err, STW_INVALID, "wrong_type", "%s[%zu] must be a number",
                       fld(f, where, key), i);
            free(vec);
            return STW_INVALID;
        }
        if (!json_number_to_float(e, &vec[i])) {
            stw_errorf(err, STW_INVALID, "not_finite", "%s[%zu] is not a finite number",
                       fld(f, where, key), i);
            free(vec);
            return STW_INVALID;
        }
        i++;
    }
    *out = vec;
    *dim_out = n;
    return STW_OK;
}

/* An optional object printed unformatted (owned, cJSON_free); *out NULL when absent. */
static stw_code print_object(const cJSON *obj, const char *where, const char *key, char **out,
                             stw_error *err)
{
    char f[FIELD_MAX];
    const cJSON *v = NULL;
    char *text;
    stw_code rc;

    *out = NULL;
    rc = get_object(obj, where, key, &v, err);
    if (rc != STW_OK || v == NULL)
        return rc;
    text = cJSON_PrintUnformatted(v);
    if (text == NULL)
        return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
    if (strlen(text) > STW_MAX_JSON_FIELD_BYTES) {
        cJSON_free(text);
        return stw_errorf(err, STW_INVALID, "too_long", "%s is larger than %u bytes as JSON",
                          fld(f, where, key), STW_MAX_JSON_FIELD_BYTES);
    }
    *out = text;
    return STW_OK;
}

/* ---- bodies ----------------------------------------------------------------------------- */

/* 1 if text holds the escape \u0000. cJSON decodes it into a NUL inside the string, where C
 * cuts it: "notes\u0000x" would be read as the product "notes" while the audit trail and the
 * client saw something else. A backslash always escapes the next character, so skipping that
 * character keeps an escaped backslash followed by "u0000" from counting. */
static int has_escaped_nul(const char *text, size_t len)
{
    size_t i;

    for (i = 0; i + 5 < len; i++) {
        if (text[i] != '\\')
            continue;
        if (memcmp(text + i + 1, "u0000", 5) == 0)
            return 1;
        i++;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key that appears twice in one object of the tree (depth first), or NULL; *oom set
 * when out of memory. cJSON keeps both members and finds the first: a request
 * {"filter":{"subject":"a","subject":"b"}} would be searched with one value while a reader of
 * its text (the audit receipt keeps the filter as sent) could take the other. Names are
 * sorted per object, so a hostile object of many keys costs n log n, not n^2. */
static const char *duplicate_key(const cJSON *node, int *oom)
{
    const cJSON *c;

    if (node == NULL)
        return NULL;
    if (cJSON_IsObject(node)) {
        size_t n = 0, i = 0;
        const char **names, *dup = NULL;
        for (c = node->child; c != NULL; c = c->next)
            n++;
        if (n > 1) {
            names = malloc(n * sizeof *names);
            if (names == NULL) {
                *oom = 1;
                return NULL;
            }
            for (c = node->child; c != NULL; c = c->next)
                names[i++] = c->string ? c->string : "";
            qsort(names, n, sizeof *names, name_cmp);
            for (i = 1; i < n && dup == NULL; i++)
                if (strcmp(names[i - 1], names[i]) == 0)
                    dup = names[i];
            free(names);
            if (dup != NULL)
                return dup;
        }
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        for (c = node->child; c != NULL; c = c->next) {
            const char *dup = duplicate_key(c, oom);
            if (dup != NULL || *oom)
                return dup;
        }
    return NULL;
}

stw_code json_parse_body(const char *text, size_t len, cJSON **out, stw_error *err)
{
    const char *dup;
    int oom = 0;
    const char *end = NULL;
    cJSON *root;

    *out = NULL;
    if (text == NULL || len == 0)
        return stw_errorf(err, STW_INVALID, "malformed_json", "request body is empty");
    /* An embedded NUL would end cJSON's input early and hide what follows it. */
    if (memchr(text, '\0', len) != NULL)
        return stw_errorf(err, STW_INVALID, "malformed_json", "request body contains a NUL byte");
    if (has_escaped_nul(text, len))
        return stw_errorf(err, STW_INVALID, "malformed_json",
                          "request body contains an escaped NUL (\\u0000)");
    root = cJSON_ParseWithOpts(text, &end, 1);
    if (root == NULL) {
        size_t at = (end != NULL && end >= text) ? (size_t)(end - text) : 0;

        return stw_errorf(err, STW_INVALID, "malformed_json",
                          "request body is not valid JSON (error near byte %zu)", at);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return stw_errorf(err, STW_INVALID, "wrong_type", "request body must be a JSON object");
    }
    dup = duplicate_key(root, &oom);
    if (dup != NULL || oom) {
        stw_code rc = oom ? stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory")
                          : stw_errorf(err, STW_INVALID, "duplicate_key",
                                       "request body has the key '%.64s' twice in one object",
                                       dup);
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return STW_OK;
}

/* ---- chunks ----------------------------------------------------------------------------- */

void json_chunk_hold_release(struct json_chunk_hold *hold)
{
    if (hold == NULL)
        return;
    free(hold->vector);
    free(hold->compartments);
    cJSON_free(hold->provenance_json);
    cJSON_free(hold->metadata_json);
    memset(hold, 0, sizeof *hold);
}

static stw_code parse_labels(const cJSON *labels, const char *where, stw_chunk *c,
                             struct json_chunk_hold *hold, stw_error *err)
{
    char f[FIELD_MAX];
    const char *conf = NULL;
    stw_code rc;

    rc = get_string(labels, where, "confidentiality", 1, STW_LABEL_MAX, &conf, err);
    if (rc != STW_OK)
        return rc;
    c->confidentiality = stw_conf_parse(conf);
    if (c->confidentiality < 0)
        return stw_errorf(err, STW_INVALID, "unknown_confidentiality",
                          "%s is not one of U L M N R V", fld(f, where, "confidentiality"));
    rc = get_string_list(labels, where, "compartments", 0, 1, STW_MAX_LABELS, STW_LABEL_MAX,
                         &hold->compartments, &c->ncompartments, err);
    c->compartments = (const char *const *)hold->compartments;
    return rc;
}

static stw_code parse_provenance(const cJSON *prov, const char *where, stw_chunk *c, stw_error *err)
{
    stw_code rc;

    rc = get_string(prov, where, "source_system", 0, STW_ID_MAX, &c->source_system, err);
    if (rc == STW_OK)
        rc = get_string(prov, where, "record_id", 0, STW_ID_MAX, &c->record_id, err);
    if (rc == STW_OK)
        rc = get_string(prov, where, "document_id", 0, STW_ID_MAX, &c->document_id, err);
    if (rc == STW_OK)
        rc = get_string(prov, where, "section", 0, STW_ID_MAX, &c->section, err);
    if (rc == STW_OK)
        rc = get_string(prov, where, "subject", 0, STW_ID_MAX, &c->subject, err);
    if (rc == STW_OK)
        rc = get_time(prov, where, "created_at", &c->created_ms, err);
    return rc;
}

stw_code json_parse_chunk(const cJSON *obj, const char *where, stw_chunk *out,
                          struct json_chunk_hold *hold, stw_error *err)
{
    char f[FIELD_MAX];
    char sub[FIELD_MAX];
    stw_chunk c;
    struct json_chunk_hold h;
    const cJSON *labels = NULL, *prov = NULL;
    stw_code rc;

    memset(&c, 0, sizeof c);
    memset(&h, 0, sizeof h);
    c.confidentiality = -1;
    c.created_ms = STW_TIME_NONE;
    if (where == NULL)
        where = "";

    if (!cJSON_IsObject(obj)) {
        rc =
            stw_errorf(err, STW_INVALID, "wrong_type", "%s must be an object", fld(f, where, NULL));
        goto fail;
    }
    rc = get_string(obj, where, "id", 1, STW_ID_MAX, &c.id, err);
    if (rc != STW_OK)
        goto fail;
    rc = get_string(obj, where, "text", 1, STW_MAX_TEXT_BYTES, &c.text, err);
    if (rc != STW_OK)
        goto fail;
    rc = get_vector(obj, where, "vector", &h.vector, &c.dim, err);
    if (rc != STW_OK)
        goto fail;
    c.vector = h.vector;

    rc = get_object(obj, where, "labels", &labels, err);
    if (rc != STW_OK)
        goto fail;
    if (labels == NULL) {
        /* Fail closed here already, with a clearer message than the core's. */
        rc = stw_errorf(err, STW_INVALID, "missing_labels",
                        "%s is missing: every chunk needs access labels", fld(f, where, "labels"));
        goto fail;
    }
    rc = parse_labels(labels, fld(sub, where, "labels"), &c, &h, err);
    if (rc != STW_OK)
        goto fail;

    rc = get_object(obj, where, "provenance", &prov, err);
    if (rc != STW_OK)
        goto fail;
    if (prov != NULL) {
        rc = parse_provenance(prov, fld(sub, where, "provenance"), &c, err);
        if (rc != STW_OK)
            goto fail;
        rc = print_object(obj, where, "provenance", &h.provenance_json, err);
        if (rc != STW_OK)
            goto fail;
        c.provenance_json = h.provenance_json;
    }
    rc = print_object(obj, where, "metadata", &h.metadata_json, err);
    if (rc != STW_OK)
        goto fail;
    c.metadata_json = h.metadata_json;

    *out = c;
    *hold = h;
    return STW_OK;
fail:
    json_chunk_hold_release(&h);
    return rc;
}

void json_chunk_batch_release(struct json_chunk_batch *b)
{
    size_t i;

    if (b == NULL)
        return;
    for (i = 0; b->holds != NULL && i < b->n; i++)
        json_chunk_hold_release(&b->holds[i]);
    free(b->holds);
    free(b->chunks);
    memset(b, 0, sizeof *b);
}

stw_code json_parse_chunk_batch(const cJSON *body, size_t max_batch, struct json_chunk_batch *out,
                                stw_error *err)
{
    struct json_chunk_batch b;
    const cJSON *arr = NULL, *e;
    size_t n = 0, i = 0;
    stw_code rc;

    memset(&b, 0, sizeof b);
    memset(out, 0, sizeof *out);
    if (get(body, "chunks") == NULL)
        return missing(err, "", "chunks");
    /* The count is checked here, before any per-chunk allocation. */
    rc = get_array(body, "", "chunks", 1, (size_t)-1, &arr, &n, err);
    if (rc != STW_OK)
        return rc;
    if (n == 0)
        return stw_errorf(err, STW_INVALID, "invalid_value", "chunks must not be empty");
    if (n > max_batch)
        return stw_errorf(err, STW_TOO_LARGE, "batch_too_large",
                          "chunks has %zu elements; the limit is %zu per request", n, max_batch);
    b.chunks = calloc(n, sizeof *b.chunks);
    b.holds = calloc(n, sizeof *b.holds);
    if (b.chunks == NULL || b.holds == NULL) {
        rc = stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(e, arr)
    {
        char where[32];

        snprintf(where, sizeof where, "chunks[%zu]", i);
        rc = json_parse_chunk(e, where, &b.chunks[i], &b.holds[i], err);
        if (rc != STW_OK)
            goto fail;
        i++;
        b.n = i;
    }
    b.n = n;
    *out = b;
    return STW_OK;
fail:
    json_chunk_batch_release(&b);
    return rc;
}

/* ---- query ------------------------------------------------------------------------------ */

void json_query_hold_release(struct json_query_hold *hold)
{
    size_t i;

    if (hold == NULL)
        return;
    free(hold->vector);
    free(hold->products);
    for (i = 0; hold->names != NULL && i < hold->nnames; i++)
        free(hold->names[i]);
    free(hold->names);
    free(hold->source_systems);
    free(hold->sections);
    cJSON_free(hold->filter_json);
    memset(hold, 0, sizeof *hold);
}

/* One element of "products": "name", "name@version" or an object. */
static stw_code parse_product_ref(const cJSON *e, size_t i, stw_product_ref *ref,
                                  struct json_query_hold *h, stw_error *err)
{
    char where[32];
    const char *version = NULL;
    stw_code rc;

    snprintf(where, sizeof where, "products[%zu]", i);
    ref->product = NULL;
    ref->version = NULL;
    ref->as_of_ms = STW_TIME_NONE;
    if (cJSON_IsString(e) && e->valuestring != NULL) {
        const char *s = e->valuestring;
        const char *at = strchr(s, '@');
        size_t len = strlen(s);
        char *copy;

        if (len == 0 || len > 2 * STW_NAME_MAX + 1 || at == s ||
            (at != NULL && (at[1] == '\0' || strchr(at + 1, '@') != NULL)))
            return stw_errorf(err, STW_INVALID, "invalid_name",
                              "%s must be \"product\" or \"product@version\"", where);
        copy = malloc(len + 1);
        if (copy == NULL)
            return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        memcpy(copy, s, len + 1);
        h->names[h->nnames++] = copy;
        ref->product = copy;
        if (at != NULL) {
            copy[at - s] = '\0';
            ref->version = copy + (at - s) + 1;
        }
        return STW_OK;
    }
    if (!cJSON_IsObject(e))
        return stw_errorf(err, STW_INVALID, "wrong_type",
                          "%s must be a string or an object with \"product\"", where);
    rc = get_string(e, where, "product", 1, STW_NAME_MAX, &ref->product, err);
    if (rc == STW_OK)
        rc = get_string(e, where, "version", 0, STW_NAME_MAX, &version, err);
    if (rc == STW_OK)
        rc = get_time(e, where, "as_of", &ref->as_of_ms, err);
    if (rc != STW_OK)
        return rc;
    if (version != NULL && ref->as_of_ms != STW_TIME_NONE)
        return stw_errorf(err, STW_INVALID, "conflicting_fields",
                          "%s may have \"version\" or \"as_of\", not both", where);
    ref->version = version;
    return STW_OK;
}

static const char *const filter_keys[] = {"subject", "source_system", "section", "created_from",
                                          "created_to"};

static stw_code parse_filter(const cJSON *filter, stw_query *q, struct json_query_hold *h,
                             stw_error *err)
{
    const cJSON *e;
    stw_code rc;

    /* A misspelt key would silently widen the answer: reject what we do not know. */
    cJSON_ArrayForEach(e, filter)
    {
        size_t k;
        int known = 0;

        for (k = 0; k < sizeof filter_keys / sizeof filter_keys[0]; k++)
            known |= (e->string != NULL && strcmp(e->string, filter_keys[k]) == 0);
        if (!known)
            return stw_errorf(err, STW_INVALID, "unknown_field",
                              "filter.%.64s is not a filter field; allowed: subject, "
                              "source_system, section, created_from, created_to",
                              e->string != NULL ? e->string : "");
    }
    rc = get_string(filter, "filter", "subject", 0, STW_ID_MAX, &q->filter.subject, err);
    if (rc != STW_OK)
        return rc;
    rc = get_string_list(filter, "filter", "source_system", 1, 0, STW_MAX_FILTER_VALUES, STW_ID_MAX,
                         &h->source_systems, &q->filter.nsource_systems, err);
    if (rc != STW_OK)
        return rc;
    q->filter.source_systems = (const char *const *)h->source_systems;
    rc = get_string_list(filter, "filter", "section", 1, 0, STW_MAX_FILTER_VALUES, STW_ID_MAX,
                         &h->sections, &q->filter.nsections, err);
    if (rc != STW_OK)
        return rc;
    q->filter.sections = (const char *const *)h->sections;
    rc = get_time(filter, "filter", "created_from", &q->filter.created_from, err);
    if (rc != STW_OK)
        return rc;
    rc = get_time(filter, "filter", "created_to", &q->filter.created_to, err);
    if (rc != STW_OK)
        return rc;
    /* created_from after created_to is not an error: the range is empty and matches nothing,
     * like any other narrowing filter that excludes everything. */
    h->filter_json = cJSON_PrintUnformatted(filter);
    if (h->filter_json == NULL)
        return stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
    q->filter_json = h->filter_json;
    return STW_OK;
}

static stw_code parse_include(const cJSON *body, unsigned *out, stw_error *err)
{
    static const struct {
        const char *name;
        unsigned bit;
    } incs[] = {{"text", STW_INC_TEXT},
                {"labels", STW_INC_LABELS},
                {"provenance", STW_INC_PROVENANCE},
                {"metadata", STW_INC_METADATA}};
    const cJSON *arr = NULL, *e;
    size_t n = 0, i = 0;
    unsigned bits = 0;
    stw_code rc;

    *out = STW_INC_ALL;
    rc = get_array(body, "", "include", 0, 16, &arr, &n, err);
    if (rc != STW_OK || arr == NULL)
        return rc;
    cJSON_ArrayForEach(e, arr)
    {
        size_t k;
        unsigned bit = 0;

        if (cJSON_IsString(e) && e->valuestring != NULL) {
            for (k = 0; k < sizeof incs / sizeof incs[0]; k++) {
                if (strcmp(e->valuestring, incs[k].name) == 0)
                    bit = incs[k].bit;
            }
        }
        if (bit == 0)
            return stw_errorf(err, STW_INVALID, "invalid_value",
                              "include[%zu] must be one of text, labels, provenance, metadata", i);
        bits |= bit;
        i++;
    }
    *out = bits;
    return STW_OK;
}

stw_code json_parse_query(const cJSON *body, size_t max_k, stw_query *out,
                          struct json_query_hold *hold, stw_error *err)
{
    stw_query q;
    struct json_query_hold h;
    const cJSON *v, *products = NULL, *filter = NULL, *e;
    const char *purpose = NULL;
    size_t nproducts = 0, i = 0;
    int64_t k = 10;
    stw_code rc;

    memset(&q, 0, sizeof q);
    memset(&h, 0, sizeof h);
    q.filter.created_from = STW_TIME_NONE;
    q.filter.created_to = STW_TIME_NONE;

    rc = get_vector(body, "", "vector", &h.vector, &q.dim, err);
    if (rc != STW_OK)
        goto fail;
    q.vector = h.vector;

    v = get(body, "k");
    if (v != NULL) {
        if (!cJSON_IsNumber(v)) {
            rc = stw_errorf(err, STW_INVALID, "wrong_type", "k must be an integer");
            goto fail;
        }
        if (!json_number_to_int(v, 1, (int64_t)max_k, &k)) {
            rc = stw_errorf(err, STW_INVALID, "k_out_of_range", "k must be an integer in 1..%zu",
                            max_k);
            goto fail;
        }
    } else {
        q.k_default = 1;
        if ((size_t)k > max_k)
            k = (int64_t)max_k;
    }
    q.k = (size_t)k;

    rc = get_string(body, "", "purpose", 1, STW_NAME_MAX, &purpose, err);
    if (rc != STW_OK)
        goto fail;
    q.purpose = stw_purpose_parse(purpose);
    if (q.purpose < 0) {
        rc = stw_errorf(err, STW_INVALID, "unknown_purpose",
                        "purpose is not a known HL7 PurposeOfUse code (e.g. TREAT, HPAYMT)");
        goto fail;
    }

    rc = get_array(body, "", "products", 1, STW_MAX_PRODUCTS_PER_QUERY, &products, &nproducts, err);
    if (rc != STW_OK)
        goto fail;
    if (nproducts == 0) {
        rc = stw_errorf(err, STW_INVALID, "invalid_value", "products must not be empty");
        goto fail;
    }
    h.products = calloc(nproducts, sizeof *h.products);
    h.names = calloc(nproducts, sizeof *h.names);
    if (h.products == NULL || h.names == NULL) {
        rc = stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(e, products)
    {
        rc = parse_product_ref(e, i, &h.products[i], &h, err);
        if (rc != STW_OK)
            goto fail;
        i++;
    }
    q.nproducts = nproducts;
    q.products = h.products;

    rc = get_object(body, "", "filter", &filter, err);
    if (rc != STW_OK)
        goto fail;
    if (filter != NULL) {
        rc = parse_filter(filter, &q, &h, err);
        if (rc != STW_OK)
            goto fail;
    }
    rc = parse_include(body, &q.include, err);
    if (rc != STW_OK)
        goto fail;
    rc = get_bool(body, "", "explain", &q.explain, err);
    if (rc != STW_OK)
        goto fail;
    rc = get_string(body, "", "reason", 0, STW_MAX_REASON_BYTES, &q.reason, err);
    if (rc != STW_OK)
        goto fail;

    *out = q;
    *hold = h;
    return STW_OK;
fail:
    json_query_hold_release(&h);
    return rc;
}

/* ---- products, principals, grants, suppressions ------------------------------------------ */

stw_code json_parse_product(const cJSON *body, size_t max_dimension, stw_product *out,
                            stw_error *err)
{
    stw_product p;
    const cJSON *contract = NULL, *v;
    const char *metric = NULL, *model = NULL, *description = NULL, *terms = NULL;
    int64_t dim = 0;
    stw_code rc;

    memset(&p, 0, sizeof p);
    rc = copy_name(body, "", "name", 1, NAME_PRODUCT, p.name, err);
    if (rc == STW_OK)
        rc = copy_name(body, "", "domain", 1, NAME_PRINCIPAL, p.domain, err);
    if (rc == STW_OK)
        rc = copy_name(body, "", "owner", 0, NAME_PRINCIPAL, p.owner, err);
    if (rc == STW_OK)
        rc = get_string(body, "", "description", 0, STW_MAX_JSON_FIELD_BYTES, &description, err);
    if (rc == STW_OK)
        rc = get_string(body, "", "terms", 0, STW_MAX_JSON_FIELD_BYTES, &terms, err);
    if (rc == STW_OK)
        rc = get_bool(body, "", "deidentified", &p.deidentified, err);
    if (rc != STW_OK)
        return rc;

    rc = get_object(body, "", "contract", &contract, err);
    if (rc != STW_OK)
        return rc;
    if (contract == NULL)
        return missing(err, "", "contract");
    rc = get_string(contract, "contract", "embedding_model", 1,
                    sizeof p.contract.embedding_model - 1, &model, err);
    if (rc != STW_OK)
        return rc;
    memcpy(p.contract.embedding_model, model, strlen(model) + 1);

    v = get(contract, "dimension");
    if (v == NULL)
        return missing(err, "contract", "dimension");
    if (!cJSON_IsNumber(v))
        return stw_errorf(err, STW_INVALID, "wrong_type", "contract.dimension must be an integer");
    if (!json_number_to_int(v, 1, (int64_t)max_dimension, &dim))
        return stw_errorf(err, STW_INVALID, "out_of_range",
                          "contract.dimension must be an integer in 1..%zu", max_dimension);
    p.contract.dimension = (size_t)dim;

    rc = get_string(contract, "contract", "metric", 1, STW_NAME_MAX, &metric, err);
    if (rc != STW_OK)
        return rc;
    p.contract.metric = stw_metric_parse(metric);
    if (p.contract.metric < 0)
        return stw_errorf(err, STW_INVALID, "unknown_metric",
                          "contract.metric must be one of cosine, ip, l2");
    rc = copy_labels(contract, "contract", "compartments", p.contract.compartments, STW_MAX_LABELS,
                     &p.contract.ncompartments, err);
    if (rc != STW_OK)
        return rc;
    rc = copy_labels(contract, "contract", "provenance_required", p.contract.provenance_required,
                     STW_MAX_PROV_REQ, &p.contract.nprovenance_required, err);
    if (rc != STW_OK)
        return rc;
    /* stw_product's text fields are `char *` because the library returns them owned; as input
     * they are only read (stw_product_create takes a const stw_product *). */
    p.description = (char *)description;
    p.terms = (char *)terms;
    p.created_ms = STW_TIME_NONE;
    *out = p;
    return STW_OK;
}

stw_code json_parse_principal(const cJSON *body, stw_principal *out, stw_error *err)
{
    stw_principal p;
    const cJSON *roles = NULL, *domains = NULL, *e;
    size_t n = 0, i = 0;
    stw_code rc;

    memset(&p, 0, sizeof p);
    rc = copy_name(body, "", "id", 1, NAME_PRINCIPAL, p.id, err);
    if (rc != STW_OK)
        return rc;
    rc = get_array(body, "", "roles", 1, 16, &roles, &n, err);
    if (rc != STW_OK)
        return rc;
    if (n == 0)
        return stw_errorf(err, STW_INVALID, "invalid_value", "roles must not be empty");
    cJSON_ArrayForEach(e, roles)
    {
        int bit;

        if (!cJSON_IsString(e) || e->valuestring == NULL)
            return stw_errorf(err, STW_INVALID, "wrong_type", "roles[%zu] must be a string", i);
        bit = stw_role_parse(e->valuestring);
        if (bit < 0)
            return stw_errorf(err, STW_INVALID, "unknown_role",
                              "roles[%zu] must be one of admin, owner, consumer, auditor", i);
        p.roles |= (unsigned)bit;
        i++;
    }
    rc = get_array(body, "", "domains", 0, STW_MAX_DOMAINS, &domains, &n, err);
    if (rc != STW_OK)
        return rc;
    i = 0;
    cJSON_ArrayForEach(e, domains)
    {
        if (!cJSON_IsString(e) || e->valuestring == NULL)
            return stw_errorf(err, STW_INVALID, "wrong_type", "domains[%zu] must be a string", i);
        if (strlen(e->valuestring) > STW_NAME_MAX || !stw_valid_principal_name(e->valuestring))
            return stw_errorf(err, STW_INVALID, "invalid_name", "domains[%zu] must match %s", i,
                              name_rule_text(NAME_PRINCIPAL));
        memcpy(p.domains[i], e->valuestring, strlen(e->valuestring) + 1);
        i++;
    }
    p.ndomains = i;
    *out = p;
    return STW_OK;
}

stw_code json_parse_grant(const cJSON *body, stw_grant *out, stw_error *err)
{
    stw_grant g;
    const cJSON *purposes = NULL, *e;
    const char *clearance = NULL;
    size_t n = 0, i = 0;
    stw_code rc;

    memset(&g, 0, sizeof g);
    rc = copy_name(body, "", "principal", 1, NAME_PRINCIPAL, g.principal, err);
    if (rc == STW_OK)
        rc = copy_name(body, "", "product", 0, NAME_PRODUCT, g.product, err);
    if (rc == STW_OK)
        rc = copy_name(body, "", "domain", 0, NAME_PRINCIPAL, g.domain, err);
    if (rc != STW_OK)
        return rc;
    if (g.product[0] != '\0' && g.domain[0] != '\0')
        return stw_errorf(err, STW_INVALID, "conflicting_fields",
                          "a grant names either product or domain, not both");
    if (g.product[0] == '\0' && g.domain[0] == '\0')
        return stw_errorf(err, STW_INVALID, "missing_field",
                          "product is missing (or give domain instead)");

    rc = get_array(body, "", "purposes", 1, 64, &purposes, &n, err);
    if (rc != STW_OK)
        return rc;
    if (n == 0)
        return stw_errorf(err, STW_INVALID, "invalid_value", "purposes must not be empty");
    cJSON_ArrayForEach(e, purposes)
    {
        int p;

        if (!cJSON_IsString(e) || e->valuestring == NULL)
            return stw_errorf(err, STW_INVALID, "wrong_type", "purposes[%zu] must be a string", i);
        p = stw_purpose_parse(e->valuestring);
        if (p < 0 || p >= 32)
            return stw_errorf(err, STW_INVALID, "unknown_purpose",
                              "purposes[%zu] is not a known HL7 PurposeOfUse code", i);
        g.purposes |= 1u << (unsigned)p;
        i++;
    }

    rc = get_string(body, "", "clearance", 1, STW_LABEL_MAX, &clearance, err);
    if (rc != STW_OK)
        return rc;
    g.clearance = stw_conf_parse(clearance);
    if (g.clearance < 0)
        return stw_errorf(err, STW_INVALID, "unknown_confidentiality",
                          "clearance is not one of U L M N R V");
    rc = copy_labels(body, "", "compartments", g.compartments, STW_MAX_LABELS, &g.ncompartments,
                     err);
    if (rc != STW_OK)
        return rc;
    g.created_ms = STW_TIME_NONE;
    *out = g;
    return STW_OK;
}

stw_code json_parse_suppression(const cJSON *body, stw_suppression *out, stw_error *err)
{
    static const struct {
        const char *key;
        int kind;
    } kinds[] = {{"subject", STW_SUPP_SUBJECT},
                 {"document_id", STW_SUPP_DOCUMENT},
                 {"chunk_id", STW_SUPP_CHUNK}};
    stw_suppression s;
    size_t i, found = 0;
    stw_code rc;

    memset(&s, 0, sizeof s);
    rc = copy_name(body, "", "product", 1, NAME_PRODUCT, s.product, err);
    if (rc != STW_OK)
        return rc;
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (get(body, kinds[i].key) == NULL)
            continue;
        if (found++ > 0)
            return stw_errorf(err, STW_INVALID, "conflicting_fields",
                              "a suppression names exactly one of subject, document_id, chunk_id");
        rc = copy_string(body, "", kinds[i].key, 1, s.value, sizeof s.value, err);
        if (rc != STW_OK)
            return rc;
        s.kind = kinds[i].kind;
    }
    if (found == 0)
        return stw_errorf(err, STW_INVALID, "missing_field",
                          "subject is missing (or give document_id or chunk_id instead)");
    rc = copy_string(body, "", "reason", 0, s.reason, sizeof s.reason, err);
    if (rc != STW_OK)
        return rc;
    s.created_ms = STW_TIME_NONE;
    *out = s;
    return STW_OK;
}

stw_code json_parse_version_create(const cJSON *body, char out[STW_NAME_MAX + 1], stw_error *err)
{
    char name[STW_NAME_MAX + 1];
    stw_code rc;

    rc = copy_name(body, "", "version", 1, NAME_VERSION, name, err);
    if (rc != STW_OK)
        return rc;
    memcpy(out, name, sizeof name);
    return STW_OK;
}

/* ---- rendering -------------------------------------------------------------------------- */

/* Each add_* returns 1 on success, 0 when out of memory (the tree stays valid). */
static int add_item(cJSON *obj, const char *key, cJSON *item)
{
    if (item == NULL)
        return 0;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

/* NULL s adds JSON null. */
static int add_str(cJSON *obj, const char *key, const char *s)
{
    return add_item(obj, key, s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull());
}

/* "" adds JSON null. */
static int add_str_or_null(cJSON *obj, const char *key, const char *s)
{
    return add_str(obj, key, (s != NULL && s[0] != '\0') ? s : NULL);
}

static int add_num(cJSON *obj, const char *key, double d)
{
    return add_item(obj, key, cJSON_CreateNumber(d));
}

static int add_bool(cJSON *obj, const char *key, int b)
{
    return add_item(obj, key, cJSON_CreateBool(b ? 1 : 0));
}

cJSON *json_render_time(int64_t ms)
{
    char buf[32];

    if (ms == STW_TIME_NONE)
        return cJSON_CreateNull();
    stw_time_format(ms, buf);
    return cJSON_CreateString(buf);
}

static int add_time(cJSON *obj, const char *key, int64_t ms)
{
    return add_item(obj, key, json_render_time(ms));
}

/* An array of n strings taken from a 2-D char array with row stride `stride`. */
static cJSON *string_rows(const char *rows, size_t n, size_t stride)
{
    cJSON *arr = cJSON_CreateArray();
    size_t i;

    for (i = 0; arr != NULL && i < n; i++) {
        cJSON *s = cJSON_CreateString(rows + i * stride);

        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *role_array(unsigned roles)
{
    cJSON *arr = cJSON_CreateArray();
    unsigned bit;

    for (bit = 1; arr != NULL && bit <= STW_ROLE_AUDITOR; bit <<= 1) {
        const char *name;
        cJSON *s;

        if ((roles & bit) == 0)
            continue;
        name = stw_role_name(bit);
        s = cJSON_CreateString(name != NULL ? name : "unknown");
        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *purpose_array(uint32_t purposes)
{
    cJSON *arr = cJSON_CreateArray();
    int p;

    for (p = 0; arr != NULL && p < STW_PURPOSE_COUNT; p++) {
        cJSON *s;

        if ((purposes & (1u << (unsigned)p)) == 0)
            continue;
        s = cJSON_CreateString(stw_purpose_name(p));
        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

cJSON *json_render_product(const stw_product *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *c = cJSON_CreateObject();
    int ok = o != NULL && c != NULL;

    ok = ok && add_str(o, "name", p->name);
    ok = ok && add_str(o, "domain", p->domain);
    ok = ok && add_str_or_null(o, "owner", p->owner);
    ok = ok && add_str(o, "description", p->description);
    ok = ok && add_str(o, "terms", p->terms);
    ok = ok && add_bool(o, "deidentified", p->deidentified);
    ok = ok && add_str(c, "embedding_model", p->contract.embedding_model);
    ok = ok && add_num(c, "dimension", (double)p->contract.dimension);
    ok = ok && add_str(c, "metric", stw_metric_name(p->contract.metric));
    ok = ok && add_item(c, "compartments",
                        string_rows(&p->contract.compartments[0][0], p->contract.ncompartments,
                                    sizeof p->contract.compartments[0]));
    ok = ok && add_item(c, "provenance_required",
                        string_rows(&p->contract.provenance_required[0][0],
                                    p->contract.nprovenance_required,
                                    sizeof p->contract.provenance_required[0]));
    if (ok) {
        ok = cJSON_AddItemToObject(o, "contract", c);
        if (ok)
            c = NULL;
    }
    ok = ok && add_time(o, "created_at", p->created_ms);
    ok = ok && add_num(o, "versions", (double)p->nversions);
    ok = ok && add_str_or_null(o, "latest", p->latest);
    cJSON_Delete(c);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *json_render_version(const stw_version_info *v)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    int published = v->state == STW_PUBLISHED || v->state == STW_RETIRED;

    ok = ok && add_str(o, "product", v->product);
    ok = ok && add_str(o, "version", v->name);
    ok = ok && add_str(o, "state", stw_state_name(v->state));
    ok = ok && add_num(o, "chunks", (double)v->chunks);
    ok = ok && add_str_or_null(o, "content_hash", v->content_hash);
    ok = ok && add_time(o, "created_at", v->created_ms);
    ok = ok && add_time(o, "published_at", published ? v->published_ms : STW_TIME_NONE);
    ok = ok && add_time(o, "retired_at", v->state == STW_RETIRED ? v->retired_ms : STW_TIME_NONE);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *json_render_grant(const stw_grant *g)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;

    ok = ok && add_str(o, "id", g->id);
    ok = ok && add_str(o, "principal", g->principal);
    if (g->product[0] != '\0')
        ok = ok && add_str(o, "product", g->product);
    else
        ok = ok && add_str(o, "domain", g->domain);
    ok = ok && add_item(o, "purposes", purpose_array(g->purposes));
    ok = ok && add_str(o, "clearance", stw_conf_name(g->clearance));
    ok = ok &&
         add_item(o, "compartments",
                  string_rows(&g->compartments[0][0], g->ncompartments, sizeof g->compartments[0]));
    ok = ok && add_time(o, "created_at", g->created_ms);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *json_render_suppression(const stw_suppression *s)
{
    static const char *const kind_keys[] = {"subject", "document_id", "chunk_id"};
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    const char *key = (s->kind >= 0 && s->kind <= STW_SUPP_CHUNK) ? kind_keys[s->kind] : "value";

    ok = ok && add_str(o, "id", s->id);
    ok = ok && add_str(o, "product", s->product);
    ok = ok && add_str(o, key, s->value);
    ok = ok && add_str_or_null(o, "reason", s->reason);
    ok = ok && add_time(o, "created_at", s->created_ms);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *json_render_policy(const stw_policy *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *grants = cJSON_CreateArray();
    cJSON *supps = cJSON_CreateArray();
    int ok = o != NULL && grants != NULL && supps != NULL;
    size_t i;

    for (i = 0; ok && i < p->ngrants; i++) {
        cJSON *g = json_render_grant(&p->grants[i]);

        ok = g != NULL && cJSON_AddItemToArray(grants, g);
        if (!ok)
            cJSON_Delete(g);
    }
    for (i = 0; ok && i < p->nsuppressions; i++) {
        cJSON *s = json_render_suppression(&p->suppressions[i]);

        ok = s != NULL && cJSON_AddItemToArray(supps, s);
        if (!ok)
            cJSON_Delete(s);
    }
    ok = ok && add_num(o, "version", (double)p->version);
    ok = ok && add_str(o, "hash", p->hash);
    ok = ok && add_item(o, "grants", grants);
    grants = NULL; /* owned by o now, or freed by add_item */
    ok = ok && add_item(o, "suppressions", supps);
    supps = NULL;
    cJSON_Delete(grants);
    cJSON_Delete(supps);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *json_render_principal(const stw_principal *p, const char *api_key)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;

    ok = ok && add_str(o, "id", p->id);
    ok = ok && add_item(o, "roles", role_array(p->roles));
    ok = ok &&
         add_item(o, "domains", string_rows(&p->domains[0][0], p->ndomains, sizeof p->domains[0]));
    if (api_key != NULL)
        ok = ok && add_str(o, "api_key", api_key);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Parses stored JSON text and attaches it under key; 0 and *err on failure. */
/* A result's labels, provenance and metadata are JSON the library printed itself (cJSON, from
 * the rows file or the chunks table), so they are copied into the answer as they are instead
 * of being parsed into a tree only to be printed again (3 parses per result). */
static int add_stored_json(cJSON *obj, const char *key, const char *text, stw_error *err)
{
    cJSON *v;

    if (text[0] != '{' && text[0] != '[') {
        stw_errorf(err, STW_INTERNAL, "internal", "stored %s of a result is not JSON", key);
        return 0;
    }
    v = cJSON_CreateRaw(text);
    if (v == NULL || !cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        return 0;
    }
    return 1;
}

static cJSON *render_result(const stw_result *r, stw_error *err)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;

    ok = ok && add_num(o, "rank", (double)r->rank);
    ok = ok && add_num(o, "score", r->score);
    ok = ok && add_str(o, "product", r->product);
    ok = ok && add_str(o, "version", r->version);
    ok = ok && add_str(o, "chunk_id", r->chunk_id);
    if (ok && r->text != NULL)
        ok = add_str(o, "text", r->text);
    if (!ok) {
        stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    if (r->labels_json != NULL && !add_stored_json(o, "labels", r->labels_json, err))
        goto fail;
    if (r->provenance_json != NULL && !add_stored_json(o, "provenance", r->provenance_json, err))
        goto fail;
    if (r->metadata_json != NULL && !add_stored_json(o, "metadata", r->metadata_json, err))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

cJSON *json_render_answer(const stw_answer *a, int with_plan, stw_error *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *versions = NULL, *results = NULL, *plan = NULL;
    size_t i;
    int ok = o != NULL;

    ok = ok && add_str(o, "query_id", a->query_id);
    ok = ok && add_num(o, "policy_version", (double)a->policy_version);
    ok = ok && add_bool(o, "complete", a->complete);
    if (ok && a->text_withheld) /* minimum necessary: say so rather than leave it to guess */
        ok = cJSON_AddItemToObject(o, "withheld", cJSON_CreateStringArray(
                                                      (const char *const[]){"text"}, 1)) != 0;
    ok = ok && (versions = cJSON_AddArrayToObject(o, "versions")) != NULL;
    for (i = 0; ok && i < a->nversions; i++) {
        cJSON *v = cJSON_CreateObject();

        ok = v != NULL && cJSON_AddItemToArray(versions, v);
        if (!ok) {
            cJSON_Delete(v);
            break;
        }
        ok = add_str(v, "product", a->versions[i].product) &&
             add_str(v, "version", a->versions[i].version);
    }
    ok = ok && (results = cJSON_AddArrayToObject(o, "results")) != NULL;
    if (!ok) {
        stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    for (i = 0; i < a->nresults; i++) {
        cJSON *r = render_result(&a->results[i], err);

        if (r == NULL)
            goto fail;
        if (!cJSON_AddItemToArray(results, r)) {
            cJSON_Delete(r);
            stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
            goto fail;
        }
    }
    if (with_plan) {
        plan = cJSON_AddArrayToObject(o, "plan");
        ok = plan != NULL;
        /* "scanned" counts allowed rows only (the core never reports rows the caller cannot
         * see, as api.md promises) */
        for (i = 0; ok && i < a->nplan; i++) {
            const stw_plan_step *s = &a->plan[i];
            cJSON *st = cJSON_CreateObject();

            ok = st != NULL && cJSON_AddItemToArray(plan, st);
            if (!ok) {
                cJSON_Delete(st);
                break;
            }
            ok = add_str(st, "product", s->product) && add_str(st, "version", s->version) &&
                 add_str(st, "strategy", s->strategy != NULL ? s->strategy : "unknown") &&
                 add_num(st, "allowed", (double)s->allowed) &&
                 add_num(st, "scanned", (double)s->scanned);
            if (ok && s->ef > 0)
                ok = add_num(st, "ef", (double)s->ef);
        }
        if (!ok) {
            stw_errorf(err, STW_NOMEM, "out_of_memory", "out of memory");
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

cJSON *json_render_error(const stw_error *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *e = NULL;
    int ok = o != NULL;
    size_t i, n;

    ok = ok && (e = cJSON_AddObjectToObject(o, "error")) != NULL;
    ok = ok && add_str(e, "code", err->name[0] != '\0' ? err->name : stw_code_name(err->code));
    ok = ok && add_str(e, "message", err->message);
    n = err->nproblems < STW_ERR_PROBLEMS ? err->nproblems : STW_ERR_PROBLEMS;
    if (ok && n > 0) {
        cJSON *arr = cJSON_AddArrayToObject(e, "problems");

        ok = arr != NULL;
        for (i = 0; ok && i < n; i++) {
            cJSON *s = cJSON_CreateString(err->problems[i]);

            ok = s != NULL && cJSON_AddItemToArray(arr, s);
            if (!ok)
                cJSON_Delete(s);
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
