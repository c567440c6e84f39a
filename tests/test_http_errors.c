/* test_http_errors.c - every row of docs/api.md's error table over real HTTP.
 *
 * Each bad request checks the status, the error body ({"error":{"code","message"}} with a
 * snake_case code, the exact code where api.md names one, a non-empty message naming the field
 * or product where api.md says so) and that the store is unchanged afterwards: a snapshot of
 * the catalog listings, the draft version, the policy and two reference queries is taken
 * before and compared after every case.  At the end the draft is published and its contents
 * compared with what was legitimately added, so a partially stored bad batch is caught even if
 * the listings do not show draft chunk counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static th_server srv;
static char *consumer_key, *owner_key, *auditor_key;
static char *baseline;

static const float V4[][4] = {
    {1, 0, 0, 0},          {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {0.5f, 0.5f, 0.5f, 0.5f},
    {0.25f, -1, 0, 0.75f},
};

/* Appends "label: body\n" to a growing string (owned). */
static void append(char **acc, const char *label, const char *text)
{
    size_t old = *acc ? strlen(*acc) : 0;
    size_t add = strlen(label) + strlen(text) + 3;
    char *n = realloc(*acc, old + add + 1);
    if (n == NULL)
        return;
    snprintf(n + old, add + 1, "%s: %s\n", label, text);
    *acc = n;
}

/* The ids and scores of a query, as "id=score;...", or "status N". */
static void append_query(char **acc, const char *label, const char *product)
{
    cJSON *q = cJSON_CreateObject();
    cJSON *prods = cJSON_CreateArray();
    th_resp r;
    char line[256];
    char *out = NULL;

    cJSON_AddItemToObject(q, "vector", th_vec_array(V4[5], 4));
    cJSON_AddNumberToObject(q, "k", 100);
    cJSON_AddStringToObject(q, "purpose", "TREAT");
    cJSON_AddItemToArray(prods, cJSON_CreateString(product));
    cJSON_AddItemToObject(q, "products", prods);
    th_req(&srv, "POST", consumer_key, q, &r, "/v1/query");
    snprintf(line, sizeof line, "status %ld;", r.status);
    append(&out, "", line);
    const cJSON *res = th_get(r.json, "results");
    const cJSON *it;
    cJSON_ArrayForEach(it, res)
    {
        snprintf(line, sizeof line, "%s/%s/%s=%.9g;", th_str(it, "product"), th_str(it, "version"),
                 th_str(it, "chunk_id"), th_num(it, "score", -99));
        append(&out, "", line);
    }
    append(acc, label, out ? out : "");
    free(out);
    th_resp_release(&r);
    cJSON_Delete(q);
}

static void append_get(char **acc, const char *path)
{
    th_resp r;
    char *text;

    th_request(&srv, "GET", path, srv.admin_key, NULL, 0, &r);
    text = r.json ? cJSON_PrintUnformatted(r.json) : NULL;
    append(acc, path, text ? text : r.body);
    cJSON_free(text);
    th_resp_release(&r);
}

/* Everything a failed call must leave alone. Owned. */
static char *snapshot(void)
{
    char *acc = NULL;
    th_resp r;

    append_get(&acc, "/v1/products");
    append_get(&acc, "/v1/products/err-notes/versions");
    append_get(&acc, "/v1/products/err-notes/versions/v1");
    append_get(&acc, "/v1/products/err-notes/versions/v2");
    append_get(&acc, "/v1/products/err-empty/versions");
    append_get(&acc, "/v1/products/err-ret/versions");
    th_request(&srv, "GET", "/v1/policy", srv.admin_key, NULL, 0, &r);
    {
        char line[200];
        snprintf(line, sizeof line, "version=%.0f hash=%s", th_num(r.json, "version", -1),
                 th_str(r.json, "hash") ? th_str(r.json, "hash") : "(none)");
        append(&acc, "policy", line);
    }
    th_resp_release(&r);
    append_query(&acc, "query err-notes", "err-notes");
    append_query(&acc, "query err-notes@v1", "err-notes@v1");
    return acc;
}

static void check_unchanged(const char *file, int line, const char *what)
{
    char *now = snapshot();
    if (!check_boolf(file, line, "store unchanged", now && baseline && !strcmp(now, baseline),
                     "after %s the store changed.\nbefore:\n%s\nafter:\n%s", what,
                     baseline ? baseline : "", now ? now : "")) {
        free(baseline); /* report each change once */
        baseline = now;
        return;
    }
    free(now);
}

/* Sends a raw request, checks the error and that nothing changed. */
static void expect_raw(const char *file, int line, const char *method, const char *path,
                       const char *key, const char *body, long status, const char *code,
                       const char *contains)
{
    th_resp r;
    char what[512];

    th_request(&srv, method, path, key, body, body ? strlen(body) : 0, &r);
    snprintf(what, sizeof what, "%s %s %.200s", method, path, body ? body : "");
    if (!th_check_error(file, line, &r, status, code, contains))
        fprintf(stderr, "  request was: %s\n", what);
    th_resp_release(&r);
    check_unchanged(file, line, what);
}
#define EXPECT_RAW(method, path, key, body, status, code, contains)                                \
    expect_raw(__FILE__, __LINE__, method, path, key, body, status, code, contains)

/* Same with a cJSON body, which is consumed. */
static void expect_json(const char *file, int line, const char *method, const char *path,
                        const char *key, cJSON *body, long status, const char *code,
                        const char *contains)
{
    char *text = cJSON_PrintUnformatted(body);
    expect_raw(file, line, method, path, key, text, status, code, contains);
    cJSON_free(text);
    cJSON_Delete(body);
}
#define EXPECT_JSON(method, path, key, body, status, code, contains)                               \
    expect_json(__FILE__, __LINE__, method, path, key, body, status, code, contains)

/* A valid query body; callers break one thing. Owned. */
static cJSON *query_body(const char *product)
{
    cJSON *q = cJSON_CreateObject();
    cJSON *prods = cJSON_CreateArray();

    cJSON_AddItemToObject(q, "vector", th_vec_array(V4[0], 4));
    cJSON_AddNumberToObject(q, "k", 10);
    cJSON_AddStringToObject(q, "purpose", "TREAT");
    cJSON_AddItemToArray(prods, cJSON_CreateString(product));
    cJSON_AddItemToObject(q, "products", prods);
    return q;
}

static cJSON *chunk(const char *id, const float *v, size_t dim)
{
    return th_chunk_new(id, "Assessment: stable.", v, dim, "N", "PSY", "ehr", "doc-1", "assessment",
                        "patient-0001", "2026-03-04T05:06:07Z");
}

/* {"chunks":[...]} from the given chunks (consumed). Owned. */
static cJSON *batch(cJSON *a, cJSON *b)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, a);
    if (b != NULL)
        cJSON_AddItemToArray(arr, b);
    cJSON_AddItemToObject(body, "chunks", arr);
    return body;
}

/* Prints body and replaces the first occurrence of `marker` by `with`. Owned (free()). */
static char *print_replacing(cJSON *body, const char *marker, const char *with)
{
    char *text = cJSON_PrintUnformatted(body);
    char *hit = text ? strstr(text, marker) : NULL;
    char *out = NULL;

    if (hit != NULL) {
        size_t n = strlen(text) - strlen(marker) + strlen(with) + 1;
        out = malloc(n);
        if (out != NULL)
            snprintf(out, n, "%.*s%s%s", (int)(hit - text), text, with, hit + strlen(marker));
    }
    cJSON_free(text);
    cJSON_Delete(body);
    return out;
}

static int setup(void)
{
    cJSON *arr;
    int rc = 0;

    rc |= th_product_create(&srv, "err-notes", "clinical", 4, "cosine", "PSY,HIV,SUD,ETH",
                            "source_system");
    rc |= th_product_create(&srv, "err-other", "labs", 4, "cosine", "PSY,HIV,SUD,ETH", "");
    rc |= th_product_create(&srv, "err-l2", "imaging", 4, "l2", "PSY,HIV,SUD,ETH", "");
    rc |= th_product_create(&srv, "err-ret", "clinical", 4, "cosine", "PSY,HIV,SUD,ETH", "");
    rc |= th_product_create(&srv, "err-empty", "clinical", 4, "cosine", "PSY,HIV,SUD,ETH", "");
    if (rc != 0)
        return -1;

    rc |= th_version_create(&srv, "err-notes", "v1");
    arr = cJSON_CreateArray();
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "e1-%d", i);
        cJSON_AddItemToArray(arr, chunk(id, V4[i], 4));
    }
    rc |= th_chunks_add(&srv, "err-notes", "v1", arr, NULL, NULL);
    cJSON_Delete(arr);
    rc |= th_publish(&srv, "err-notes", "v1", NULL);

    rc |= th_version_create(&srv, "err-notes", "v2");
    arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, chunk("e2-a", V4[1], 4));
    cJSON_AddItemToArray(arr, chunk("e2-b", V4[2], 4));
    rc |= th_chunks_add(&srv, "err-notes", "v2", arr, NULL, NULL);
    cJSON_Delete(arr);

    for (int p = 0; p < 3; p++) {
        static const char *const names[] = {"err-other", "err-l2", "err-ret"};
        rc |= th_version_create(&srv, names[p], "v1");
        arr = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, chunk("x-1", V4[3], 4));
        rc |= th_chunks_add(&srv, names[p], "v1", arr, NULL, NULL);
        cJSON_Delete(arr);
        rc |= th_publish(&srv, names[p], "v1", NULL);
    }
    rc |= th_version_create(&srv, "err-ret", "v2");
    arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, chunk("x-2", V4[4], 4));
    rc |= th_chunks_add(&srv, "err-ret", "v2", arr, NULL, NULL);
    cJSON_Delete(arr);
    rc |= th_publish(&srv, "err-ret", "v2", NULL);
    rc |= th_retire(&srv, "err-ret", "v1");
    rc |= th_version_create(&srv, "err-empty", "v1");

    consumer_key = th_principal_create(&srv, "err-consumer", "consumer", "");
    owner_key = th_principal_create(&srv, "err-owner", "owner", "clinical");
    auditor_key = th_principal_create(&srv, "err-auditor", "auditor", "");
    if (consumer_key == NULL || owner_key == NULL || auditor_key == NULL)
        return -1;
    rc |= th_grant(&srv, "err-consumer", "err-notes", NULL, "TREAT,ETREAT", "V", "PSY,HIV,SUD,ETH",
                   NULL);
    rc |= th_grant(&srv, "err-consumer", "err-l2", NULL, "TREAT", "V", "PSY,HIV,SUD,ETH", NULL);
    rc |= th_grant(&srv, "err-consumer", "err-ret", NULL, "TREAT", "V", "PSY,HIV,SUD,ETH", NULL);
    return rc;
}

static void test_bad_input(void)
{
    const char *A = srv.admin_key, *C = consumer_key;
    cJSON *q;

    /* malformed JSON */
    EXPECT_RAW("POST", "/v1/query", C, "{\"vector\":[0.1,0.2", 400, NULL, NULL);
    EXPECT_RAW("POST", "/v1/query", C, "not json at all", 400, NULL, NULL);
    EXPECT_RAW("POST", "/v1/products", A, "{\"name\":", 400, NULL, NULL);
    EXPECT_RAW("POST", "/v1/products/err-notes/versions/v2/chunks", A, "{\"chunks\":[{]}", 400,
               NULL, NULL);
    EXPECT_RAW("POST", "/v1/query", C, "[1,2,3]", 400, NULL, NULL);

    /* a key twice in one object: which one counts would depend on the reader */
    EXPECT_RAW("POST", "/v1/query", C,
               "{\"vector\":[0.25,-1,0,0.75],\"k\":3,\"purpose\":\"TREAT\","
               "\"products\":[\"err-notes\"],\"filter\":{\"subject\":\"p-1\","
               "\"subject\":\"p-2\"}}",
               400, "duplicate_key", "subject");
    EXPECT_RAW("POST", "/v1/query", C,
               "{\"vector\":[0.25,-1,0,0.75],\"k\":3,\"k\":4,\"purpose\":\"TREAT\","
               "\"products\":[\"err-notes\"]}",
               400, "duplicate_key", "'k'");
    EXPECT_RAW("POST", "/v1/products/err-notes/versions/v2/chunks", A,
               "{\"chunks\":[{\"chunk_id\":\"dup-1\",\"text\":\"t\","
               "\"vector\":[1,0,0,0],\"labels\":{\"confidentiality\":\"N\"},"
               "\"metadata\":{\"a\":1,\"b\":2,\"a\":3}}]}",
               400, "duplicate_key", "'a'");

    /* missing field */
    q = query_body("err-notes");
    cJSON_DeleteItemFromObject(q, "purpose");
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, "purpose");
    q = query_body("err-notes");
    cJSON_DeleteItemFromObject(q, "vector");
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, "vector");
    q = query_body("err-notes");
    cJSON_DeleteItemFromObject(q, "products");
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, "products");
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{}", 400, NULL, "version");
    EXPECT_RAW("POST", "/v1/grants", A,
               "{\"product\":\"err-notes\",\"purposes\":[\"TREAT\"],\"clearance\":\"N\","
               "\"compartments\":[]}",
               400, NULL, "principal");
    EXPECT_RAW("POST", "/v1/products/err-notes/versions/v2/chunks", A, "{}", 400, NULL, "chunks");

    /* wrong-typed field */
    q = query_body("err-notes");
    cJSON_ReplaceItemInObject(q, "k", cJSON_CreateString("10"));
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, NULL);
    q = query_body("err-notes");
    cJSON_ReplaceItemInObject(q, "purpose", cJSON_CreateNumber(5));
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, "purpose");
    q = query_body("err-notes");
    cJSON_ReplaceItemInObject(q, "vector", cJSON_CreateString("0.1,0.2,0.3,0.4"));
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, "vector");
    q = query_body("err-notes");
    cJSON_ReplaceItemInObject(q, "products", cJSON_CreateString("err-notes"));
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, "products");
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{\"version\":7}", 400, NULL,
               "version");
    {
        cJSON *c = chunk("e2-typed", V4[0], 4);
        cJSON_ReplaceItemInObject(c, "vector", cJSON_CreateString("1,0,0,0"));
        EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A, batch(c, NULL), 400,
                    NULL, "vector");
    }

    /* wrong vector dimension: query and chunk (a good chunk in the same batch is not kept) */
    {
        static const float v3[3] = {1, 0, 0};
        static const float v5[5] = {1, 0, 0, 0, 0};
        q = query_body("err-notes");
        cJSON_ReplaceItemInObject(q, "vector", th_vec_array(v3, 3));
        EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, NULL);
        EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A,
                    batch(chunk("e2-good-1", V4[0], 4), chunk("e2-dim5", v5, 5)), 400, NULL, NULL);
    }

    /* infinite values (NaN cannot be written in JSON; 1e400 parses to inf) */
    {
        char *text;
        q = query_body("err-notes");
        cJSON_ReplaceItemInObject(q, "vector", th_vec_array((const float[]){777777, 0, 0, 0}, 4));
        text = print_replacing(q, "777777", "1e400");
        EXPECT_RAW("POST", "/v1/query", C, text, 400, NULL, NULL);
        free(text);
        q = query_body("err-notes");
        cJSON_ReplaceItemInObject(q, "vector", th_vec_array((const float[]){0, 777777, 0, 0}, 4));
        text = print_replacing(q, "777777", "-1e400");
        EXPECT_RAW("POST", "/v1/query", C, text, 400, NULL, NULL);
        free(text);
        text = print_replacing(batch(chunk("e2-good-2", V4[0], 4),
                                     chunk("e2-inf", (const float[]){0, 0, 777777, 0}, 4)),
                               "777777", "1e400");
        EXPECT_RAW("POST", "/v1/products/err-notes/versions/v2/chunks", A, text, 400, NULL, NULL);
        free(text);
    }

    /* unknown purpose */
    q = query_body("err-notes");
    cJSON_ReplaceItemInObject(q, "purpose", cJSON_CreateString("FOO"));
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, NULL);

    /* k out of range */
    static const double bad_k[] = {0, 1001, -1, 2.5};
    for (size_t i = 0; i < sizeof bad_k / sizeof bad_k[0]; i++) {
        q = query_body("err-notes");
        cJSON_ReplaceItemInObject(q, "k", cJSON_CreateNumber(bad_k[i]));
        EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, NULL);
    }
    {
        /* ...while the boundaries are fine */
        th_resp r;
        q = query_body("err-notes");
        cJSON_ReplaceItemInObject(q, "k", cJSON_CreateNumber(1000));
        th_req(&srv, "POST", C, q, &r, "/v1/query");
        TH_CHECK_STATUS(&r, 200);
        th_resp_release(&r);
        cJSON_ReplaceItemInObject(q, "k", cJSON_CreateNumber(1));
        th_req(&srv, "POST", C, q, &r, "/v1/query");
        TH_CHECK_STATUS(&r, 200);
        CHECK_EQ_INT(cJSON_GetArraySize(th_get(r.json, "results")), 1);
        th_resp_release(&r);
        cJSON_Delete(q);
    }

    /* products that do not share embedding model, dimension and metric */
    q = query_body("err-notes");
    cJSON_AddItemToArray(cJSON_GetObjectItem(q, "products"), cJSON_CreateString("err-l2"));
    EXPECT_JSON("POST", "/v1/query", C, q, 400, NULL, NULL);

    /* a chunk without labels, and with an unknown confidentiality code */
    {
        cJSON *c = th_chunk_new("e2-nolabels", "x", V4[0], 4, NULL, NULL, "ehr", "doc-9", "plan",
                                "patient-0002", NULL);
        EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A, batch(c, NULL), 400,
                    NULL, NULL);
        c = th_chunk_new("e2-badconf", "x", V4[0], 4, "Z", "", "ehr", "doc-9", "plan",
                         "patient-0002", NULL);
        EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A,
                    batch(chunk("e2-good-3", V4[0], 4), c), 400, NULL, NULL);
    }

    /* policy bodies */
    EXPECT_RAW("POST", "/v1/suppressions", A,
               "{\"product\":\"err-notes\",\"subject\":\"patient-0001\",\"document_id\":"
               "\"doc-1\",\"reason\":\"x\"}",
               400, NULL, NULL);
    EXPECT_RAW("POST", "/v1/suppressions", A, "{\"product\":\"err-notes\",\"reason\":\"x\"}", 400,
               NULL, NULL);
    EXPECT_RAW("POST", "/v1/grants", A,
               "{\"principal\":\"err-consumer\",\"product\":\"err-notes\",\"purposes\":"
               "[\"NOPE\"],\"clearance\":\"V\",\"compartments\":[]}",
               400, NULL, NULL);
    EXPECT_RAW("POST", "/v1/grants", A,
               "{\"principal\":\"err-consumer\",\"product\":\"err-notes\",\"purposes\":"
               "[\"TREAT\"],\"clearance\":\"Q\",\"compartments\":[]}",
               400, NULL, NULL);
    EXPECT_RAW("POST", "/v1/principals", A,
               "{\"id\":\"err-wizard\",\"roles\":[\"wizard\"],\"domains\":[]}", 400, NULL, NULL);

    /* duplicate ids inside one batch with different content: nothing of it is stored */
    {
        cJSON *c1 = chunk("e2-dup", V4[0], 4), *c2 = chunk("e2-dup", V4[0], 4);
        cJSON_ReplaceItemInObject(c2, "text", cJSON_CreateString("other text"));
        EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A, batch(c1, c2), 409,
                    NULL, NULL);
    }

    /* bad names, including the path-like version names "." and ".." */
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{\"version\":\".\"}", 400, NULL,
               NULL);
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{\"version\":\"..\"}", 400, NULL,
               NULL);
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{\"version\":\"a/b\"}", 400, NULL,
               NULL);
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{\"version\":\"bad name\"}", 400,
               NULL, NULL);
    EXPECT_RAW("POST", "/v1/products", A,
               "{\"name\":\"Bad_Name\",\"domain\":\"clinical\",\"owner\":\"admin\","
               "\"contract\":{\"embedding_model\":\"m\",\"dimension\":4,\"metric\":\"cosine\","
               "\"compartments\":[],\"provenance_required\":[]}}",
               400, NULL, NULL);
    EXPECT_RAW("POST", "/v1/products", A,
               "{\"name\":\"err-badmetric\",\"domain\":\"clinical\",\"owner\":\"admin\","
               "\"contract\":{\"embedding_model\":\"m\",\"dimension\":4,\"metric\":\"hamming\","
               "\"compartments\":[],\"provenance_required\":[]}}",
               400, NULL, NULL);
}

static void test_auth(void)
{
    const char *C = consumer_key;
    static const char new_product[] =
        "{\"name\":\"err-new\",\"domain\":\"clinical\",\"owner\":\"admin\","
        "\"contract\":{\"embedding_model\":\"m\",\"dimension\":4,\"metric\":\"cosine\","
        "\"compartments\":[],\"provenance_required\":[]}}";
    cJSON *q;

    /* 401 */
    EXPECT_RAW("GET", "/v1/products", NULL, NULL, 401, NULL, NULL);
    q = query_body("err-notes");
    EXPECT_JSON("POST", "/v1/query", NULL, q, 401, NULL, NULL);
    EXPECT_RAW("GET", "/v1/products", "stw_this-is-not-a-key", NULL, 401, NULL, NULL);
    q = query_body("err-notes");
    EXPECT_JSON("POST", "/v1/query", "0000000000000000000000000000000000000000", q, 401, NULL,
                NULL);
    EXPECT_RAW("POST", "/v1/products", NULL, new_product, 401, NULL, NULL);

    /* 403: role does not allow the call */
    EXPECT_RAW("POST", "/v1/products", C, new_product, 403, NULL, NULL);
    EXPECT_RAW("POST", "/v1/grants", C,
               "{\"principal\":\"err-consumer\",\"product\":\"err-other\",\"purposes\":"
               "[\"TREAT\"],\"clearance\":\"V\",\"compartments\":[]}",
               403, NULL, NULL);
    EXPECT_RAW("POST", "/v1/principals", C,
               "{\"id\":\"sneaky\",\"roles\":[\"admin\"],\"domains\":[]}", 403, NULL, NULL);
    EXPECT_RAW("POST", "/v1/products/err-notes/versions/v2/publish", C, NULL, 403, NULL, NULL);
    EXPECT_RAW("GET", "/v1/policy", C, NULL, 403, NULL, NULL);

    /* an owner acts only inside its domains (err-owner owns "clinical"; err-other is "labs") */
    EXPECT_RAW("POST", "/v1/products", owner_key,
               "{\"name\":\"err-owned\",\"domain\":\"labs\",\"owner\":\"err-owner\","
               "\"contract\":{\"embedding_model\":\"m\",\"dimension\":4,\"metric\":\"cosine\","
               "\"compartments\":[],\"provenance_required\":[]}}",
               403, NULL, NULL);
    EXPECT_RAW("POST", "/v1/products/err-other/versions", owner_key, "{\"version\":\"v9\"}", 403,
               NULL, NULL);
    EXPECT_JSON("POST", "/v1/products/err-other/versions/v1/chunks", owner_key,
                batch(chunk("o-1", V4[0], 4), NULL), 403, NULL, NULL);
    EXPECT_RAW("POST", "/v1/grants", owner_key,
               "{\"principal\":\"err-consumer\",\"product\":\"err-notes\",\"purposes\":"
               "[\"HMARKT\"],\"clearance\":\"V\",\"compartments\":[]}",
               403, NULL, NULL);
    /* an auditor reads audit, it does not query; a consumer does not read policy */
    q = query_body("err-notes");
    EXPECT_JSON("POST", "/v1/query", auditor_key, q, 403, NULL, NULL);

    /* 403 not_entitled, naming the product */
    q = query_body("err-other");
    EXPECT_JSON("POST", "/v1/query", C, q, 403, "not_entitled", "err-other");
    q = query_body("err-notes");
    cJSON_AddItemToArray(cJSON_GetObjectItem(q, "products"), cJSON_CreateString("err-other"));
    EXPECT_JSON("POST", "/v1/query", C, q, 403, "not_entitled", "err-other");
    q = query_body("err-notes");
    cJSON_ReplaceItemInObject(q, "purpose", cJSON_CreateString("HMARKT"));
    EXPECT_JSON("POST", "/v1/query", C, q, 403, "not_entitled", "err-notes");
    q = query_body("err-other@v1");
    EXPECT_JSON("POST", "/v1/query", C, q, 403, "not_entitled", "err-other");
}

static void test_not_found_and_method(void)
{
    const char *A = srv.admin_key, *C = consumer_key;
    cJSON *q;

    EXPECT_RAW("GET", "/v1/nope", A, NULL, 404, NULL, NULL);
    EXPECT_RAW("GET", "/nope", A, NULL, 404, NULL, NULL);
    EXPECT_RAW("GET", "/v1/products/nope", A, NULL, 404, NULL, NULL);
    EXPECT_RAW("GET", "/v1/products/nope/versions", A, NULL, 404, NULL, NULL);
    EXPECT_RAW("GET", "/v1/products/err-notes/versions/zzz", A, NULL, 404, NULL, NULL);
    EXPECT_RAW("POST", "/v1/products/nope/versions", A, "{\"version\":\"v1\"}", 404, NULL, NULL);
    EXPECT_JSON("POST", "/v1/products/err-notes/versions/zzz/chunks", A,
                batch(chunk("e2-nover", V4[0], 4), NULL), 404, NULL, NULL);
    EXPECT_RAW("POST", "/v1/products/err-notes/versions/zzz/publish", A, NULL, 404, NULL, NULL);
    q = query_body("nope");
    EXPECT_JSON("POST", "/v1/query", C, q, 404, NULL, NULL);
    q = query_body("err-notes@zzz");
    EXPECT_JSON("POST", "/v1/query", C, q, 404, NULL, NULL);
    EXPECT_RAW("GET", "/v1/audit/queries/q_doesnotexist", A, NULL, 404, NULL, NULL);
    EXPECT_RAW("DELETE", "/v1/grants/g_doesnotexist", A, NULL, 404, NULL, NULL);
    EXPECT_RAW("POST", "/v1/grants", A,
               "{\"principal\":\"err-consumer\",\"product\":\"nope\",\"purposes\":"
               "[\"TREAT\"],\"clearance\":\"V\",\"compartments\":[]}",
               404, NULL, NULL);
    EXPECT_RAW("POST", "/v1/grants", A,
               "{\"principal\":\"nobody\",\"product\":\"err-notes\",\"purposes\":"
               "[\"TREAT\"],\"clearance\":\"V\",\"compartments\":[]}",
               404, NULL, NULL);
    EXPECT_RAW("POST", "/v1/suppressions", A,
               "{\"product\":\"nope\",\"subject\":\"patient-0001\",\"reason\":\"x\"}", 404, NULL,
               NULL);

    /* 405: wrong method on a known route */
    EXPECT_RAW("DELETE", "/v1/products", A, NULL, 405, NULL, NULL);
    EXPECT_RAW("GET", "/v1/query", C, NULL, 405, NULL, NULL);
    EXPECT_RAW("PUT", "/v1/products/err-notes", A, "{}", 405, NULL, NULL);
    EXPECT_RAW("GET", "/v1/products/err-notes/versions/v2/publish", A, NULL, 405, NULL, NULL);
    EXPECT_RAW("DELETE", "/v1/principals", A, NULL, 405, NULL, NULL);
    EXPECT_RAW("POST", "/healthz", NULL, "{}", 405, NULL, NULL);
}

static void test_conflicts(void)
{
    const char *A = srv.admin_key, *C = consumer_key;
    cJSON *q, *c;

    /* 409 */
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{\"version\":\"v1\"}", 409, NULL,
               NULL);
    EXPECT_RAW("POST", "/v1/products/err-notes/versions", A, "{\"version\":\"v2\"}", 409, NULL,
               NULL);
    EXPECT_RAW("POST", "/v1/products", A,
               "{\"name\":\"err-notes\",\"domain\":\"clinical\",\"owner\":\"admin\","
               "\"contract\":{\"embedding_model\":\"m\",\"dimension\":4,\"metric\":\"cosine\","
               "\"compartments\":[],\"provenance_required\":[]}}",
               409, NULL, NULL);
    EXPECT_RAW("POST", "/v1/principals", A,
               "{\"id\":\"err-consumer\",\"roles\":[\"consumer\"],\"domains\":[]}", 409, NULL,
               NULL);
    /* e2-a re-sent with other content, next to a new chunk: 409 and neither is stored */
    c = chunk("e2-a", V4[1], 4);
    cJSON_ReplaceItemInObject(c, "text", cJSON_CreateString("Assessment: changed."));
    EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A,
                batch(chunk("e2-new", V4[3], 4), c), 409, NULL, NULL);
    c = chunk("e2-b", V4[3], 4); /* other vector */
    EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A, batch(c, NULL), 409, NULL,
                NULL);
    c = th_chunk_new("e2-b", "Assessment: stable.", V4[2], 4, "R", "PSY", "ehr", "doc-1",
                     "assessment", "patient-0001", "2026-03-04T05:06:07Z"); /* other label */
    EXPECT_JSON("POST", "/v1/products/err-notes/versions/v2/chunks", A, batch(c, NULL), 409, NULL,
                NULL);
    /* writing to a published version */
    EXPECT_JSON("POST", "/v1/products/err-notes/versions/v1/chunks", A,
                batch(chunk("e1-late", V4[0], 4), NULL), 409, NULL, NULL);
    EXPECT_JSON("POST", "/v1/products/err-notes/versions/v1/chunks", A,
                batch(chunk("e1-0", V4[1], 4), NULL), 409, NULL, NULL);

    /* 410: pinned to a retired version */
    q = query_body("err-ret@v1");
    EXPECT_JSON("POST", "/v1/query", C, q, 410, NULL, NULL);
    {
        th_resp r;
        q = query_body("err-ret");
        th_req(&srv, "POST", C, q, &r, "/v1/query");
        if (TH_CHECK_STATUS(&r, 200)) {
            const cJSON *res = th_get(r.json, "results");
            CHECK_EQ_INT(cJSON_GetArraySize(res), 1);
            CHECK_EQ_STR(th_str(cJSON_GetArrayItem(res, 0), "version"), "v2");
        }
        th_resp_release(&r);
        cJSON_Delete(q);
    }

    /* 422: publishing an empty version; it stays a draft */
    EXPECT_RAW("POST", "/v1/products/err-empty/versions/v1/publish", A, NULL, 422, NULL, NULL);

    /* identical re-send: 200, unchanged = 1, nothing changes */
    {
        cJSON *arr = cJSON_CreateArray();
        long accepted = -1, unchanged = -1;
        cJSON_AddItemToArray(arr, chunk("e2-a", V4[1], 4));
        th_chunks_add(&srv, "err-notes", "v2", arr, &accepted, &unchanged);
        CHECK_EQ_INT(unchanged, 1);
        CHECKF(accepted == 0 || accepted == -1,
               "an identical re-send was counted as accepted "
               "(%ld)",
               accepted);
        cJSON_Delete(arr);
        check_unchanged(__FILE__, __LINE__, "an identical re-send");
    }
}

static void test_too_large(void)
{
    const char *A = srv.admin_key;
    size_t n = 17u * 1024u * 1024u;
    static const char head[] = "{\"chunks\":[{\"id\":\"e2-huge\",\"text\":\"";
    static const char tail[] = "\",\"vector\":[1,0,0,0],\"labels\":{\"confidentiality\":\"N\","
                               "\"compartments\":[]},\"provenance\":{\"source_system\":\"ehr\"}}]}";
    char *body = malloc(n + 1);
    th_resp r;

    if (!CHECK(body != NULL))
        return;
    memset(body, 'a', n);
    memcpy(body, head, sizeof head - 1);
    memcpy(body + n - (sizeof tail - 1), tail, sizeof tail - 1);
    body[n] = '\0';
    EXPECT_RAW("POST", "/v1/products/err-notes/versions/v2/chunks", A, body, 413, NULL, NULL);
    /* the same without a Content-Length: the cap counts the bytes of a chunked upload too */
    th_request_chunked(&srv, "/v1/products/err-notes/versions/v2/chunks", A, body, n, &r);
    TH_CHECK_ERROR(&r, 413, NULL, NULL);
    th_resp_release(&r);
    check_unchanged(__FILE__, __LINE__, "a 17 MiB chunked upload");
    free(body);
    /* the server is still up and answering */
    th_request(&srv, "GET", "/healthz", NULL, NULL, 0, &r);
    TH_CHECK_STATUS(&r, 200);
    th_resp_release(&r);
}

/* Publishes v2 and checks it holds exactly the two chunks legitimately added. */
static void test_draft_contents(void)
{
    th_resp r;
    cJSON *q = query_body("err-notes@v2");
    int seen_a = 0, seen_b = 0;
    const cJSON *it;

    if (th_publish(&srv, "err-notes", "v2", NULL) != 0)
        goto out;
    cJSON_ReplaceItemInObject(q, "k", cJSON_CreateNumber(1000));
    th_req(&srv, "POST", consumer_key, q, &r, "/v1/query");
    if (TH_CHECK_STATUS(&r, 200)) {
        CHECKF(cJSON_GetArraySize(th_get(r.json, "results")) == 2,
               "v2 should hold e2-a and e2-b only; got %s", r.body);
        cJSON_ArrayForEach(it, th_get(r.json, "results"))
        {
            const char *id = th_str(it, "chunk_id");
            seen_a += id && !strcmp(id, "e2-a");
            seen_b += id && !strcmp(id, "e2-b");
            if (id && !strcmp(id, "e2-a"))
                CHECK_EQ_STR(th_str(it, "text"), "Assessment: stable.");
        }
        CHECK_EQ_INT(seen_a, 1);
        CHECK_EQ_INT(seen_b, 1);
    }
    th_resp_release(&r);
out:
    cJSON_Delete(q);
}

int main(int argc, char **argv)
{
    if (th_start(&srv, th_steward_bin(argc, argv)) != 0 || setup() != 0) {
        CHECK_FAIL("setup failed; skipping the cases");
        goto out;
    }
    baseline = snapshot();
    if (getenv("STW_TEST_VERBOSE") != NULL)
        fprintf(stderr, "baseline snapshot:\n%s", baseline ? baseline : "(none)");
    test_bad_input();
    test_auth();
    test_not_found_and_method();
    test_conflicts();
    test_too_large();
    test_draft_contents();
out:
    th_stop(&srv);
    free(baseline);
    free(consumer_key);
    free(owner_key);
    free(auditor_key);
    return check_summary("http_errors");
}
