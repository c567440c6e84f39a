/* policy.c - principals and keys, grants, suppressions, policy version and hash.
 *
 * Invariants: a key's secret is never stored (only SHA-256 of it), and is compared with
 * CRYPTO_memcmp; grants and suppressions are never deleted, only marked revoked/lifted, so
 * the policy in force at any past version can be reasoned about from the audit trail; the
 * policy row's version increases by exactly one per change, in the change's transaction. */
#include <cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "store.h"
#include "util.h"

#define KEY_PREFIX     "stw_"
#define KEY_ID_BYTES   8
#define KEY_SEC_BYTES  32

static char *json_string_array(const char (*items)[STW_LABEL_MAX + 1], size_t n, int sorted);

stw_code policy_principal_insert(sqlite3 *db, const stw_principal *p, char key_out[STW_KEY_MAX],
                                 stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    char key_id[2 * KEY_ID_BYTES + 1], secret[2 * KEY_SEC_BYTES + 1];
    unsigned char digest[SHA256_LEN];
    cJSON *domains = NULL;
    char *domains_json = NULL;
    stw_code rc;

    if (policy_principal_exists(db, p->id) == 1)
        return stw_errorf(err, STW_CONFLICT, "principal_exists", "principal '%s' already exists",
                          p->id);
    if (util_random_id("", KEY_ID_BYTES, key_id, sizeof key_id) != 0 ||
        util_random_id("", KEY_SEC_BYTES, secret, sizeof secret) != 0)
        return stw_errorf(err, STW_INTERNAL, "random_failed", "the random generator failed");
    util_sha256(secret, strlen(secret), digest);
    domains = cJSON_CreateArray();
    for (size_t i = 0; domains != NULL && i < p->ndomains; i++)
        cJSON_AddItemToArray(domains, cJSON_CreateString(p->domains[i]));
    domains_json = domains ? cJSON_PrintUnformatted(domains) : NULL;
    if (domains_json == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    rc = store_prepare(db, &stmt,
                       "INSERT INTO principals(id, roles, domains, key_id, key_hash, created_ms)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_text(stmt, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, p->roles);
    sqlite3_bind_text(stmt, 3, domains_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 5, digest, SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, util_now_ms());
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    snprintf(key_out, STW_KEY_MAX, KEY_PREFIX "%s_%s", key_id, secret);
done:
    OPENSSL_cleanse(secret, sizeof secret);
    sqlite3_finalize(stmt);
    cJSON_Delete(domains);
    cJSON_free(domains_json);
    return rc;
}

int policy_principal_exists(sqlite3 *db, const char *id)
{
    sqlite3_stmt *stmt = NULL;
    int found = -1;

    if (store_prepare(db, &stmt, "SELECT 1 FROM principals WHERE id = ?1", NULL) != STW_OK)
        return -1;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW: found = 1; break;
    case SQLITE_DONE: found = 0; break;
    default: found = -1; break;
    }
    sqlite3_finalize(stmt);
    return found;
}

static int parse_domains(const char *json, stw_principal *out)
{
    cJSON *arr = cJSON_Parse(json ? json : "[]"), *it;
    out->ndomains = 0;
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsString(it) && out->ndomains < STW_MAX_DOMAINS)
            snprintf(out->domains[out->ndomains++], STW_NAME_MAX + 1, "%s", it->valuestring);
    }
    cJSON_Delete(arr);
    return 0;
}

stw_code policy_authenticate(sqlite3 *db, struct stmt_cache *sc, const char *api_key,
                             stw_principal *out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    char key_id[2 * KEY_ID_BYTES + 1];
    const char *secret;
    unsigned char digest[SHA256_LEN], stored[SHA256_LEN];
    int have_row = 0;
    stw_code rc;
    stw_principal p;

    memset(stored, 0, sizeof stored);
    if (api_key == NULL || strncmp(api_key, KEY_PREFIX, 4) != 0 ||
        strlen(api_key) != 4 + 2 * KEY_ID_BYTES + 1 + 2 * KEY_SEC_BYTES ||
        api_key[4 + 2 * KEY_ID_BYTES] != '_')
        return stw_errorf(err, STW_UNAUTHENTICATED, "invalid_api_key", "the API key is not valid");
    memcpy(key_id, api_key + 4, 2 * KEY_ID_BYTES);
    key_id[2 * KEY_ID_BYTES] = '\0';
    secret = api_key + 4 + 2 * KEY_ID_BYTES + 1;
    util_sha256(secret, strlen(secret), digest);

    rc = store_take(sc, db, &stmt,
                    "SELECT id, roles, domains, key_hash FROM principals WHERE key_id = ?1", err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC);
    memset(&p, 0, sizeof p);
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW:
        if (sqlite3_column_bytes(stmt, 3) == SHA256_LEN) {
            memcpy(stored, sqlite3_column_blob(stmt, 3), SHA256_LEN);
            have_row = 1;
        }
        snprintf(p.id, sizeof p.id, "%s", store_col_text(stmt, 0));
        p.roles = (unsigned)sqlite3_column_int64(stmt, 1);
        parse_domains(store_col_text(stmt, 2), &p);
        break;
    case SQLITE_DONE: break;
    default: rc = store_error(db, err); break;
    }
    store_give(sc, stmt);
    if (rc != STW_OK)
        return rc;
    /* Compare even when no row matched, so timing does not tell a known key id apart. */
    if (CRYPTO_memcmp(digest, stored, SHA256_LEN) != 0 || !have_row)
        return stw_errorf(err, STW_UNAUTHENTICATED, "invalid_api_key", "the API key is not valid");
    *out = p;
    return STW_OK;
}

static char *json_string_array(const char (*items)[STW_LABEL_MAX + 1], size_t n, int sorted)
{
    const char *ptrs[STW_MAX_LABELS];
    cJSON *arr = cJSON_CreateArray();
    char *out;

    if (arr == NULL || n > STW_MAX_LABELS) {
        cJSON_Delete(arr);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        ptrs[i] = items[i];
    if (sorted) /* insertion sort: n <= 32 */
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && strcmp(ptrs[j - 1], ptrs[j]) > 0; j--) {
                const char *t = ptrs[j];
                ptrs[j] = ptrs[j - 1];
                ptrs[j - 1] = t;
            }
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(ptrs[i]));
    out = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return out;
}

stw_code policy_grant_insert(sqlite3 *db, stw_grant *g, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    char *comps = NULL;
    stw_code rc;

    if (util_random_id("g_", 8, g->id, sizeof g->id) != 0)
        return stw_errorf(err, STW_INTERNAL, "random_failed", "the random generator failed");
    comps = json_string_array(g->compartments, g->ncompartments, 1);
    if (comps == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    g->created_ms = util_now_ms();
    rc = store_prepare(db, &stmt,
                       "INSERT INTO grants(id, principal, product, domain, purposes, clearance,"
                       " compartments, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                       err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_text(stmt, 1, g->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, g->principal, -1, SQLITE_STATIC);
    store_bind_text(stmt, 3, g->product[0] ? g->product : NULL);
    store_bind_text(stmt, 4, g->domain[0] ? g->domain : NULL);
    sqlite3_bind_int64(stmt, 5, g->purposes);
    sqlite3_bind_int(stmt, 6, g->clearance);
    sqlite3_bind_text(stmt, 7, comps, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 8, g->created_ms);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
done:
    sqlite3_finalize(stmt);
    cJSON_free(comps);
    return rc;
}

stw_code policy_grant_revoke(sqlite3 *db, const char *id, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "UPDATE grants SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, util_now_ms());
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    else if (sqlite3_changes(db) == 0)
        rc = stw_errorf(err, STW_NOT_FOUND, "unknown_grant", "no active grant '%s'", id);
    sqlite3_finalize(stmt);
    return rc;
}

stw_code policy_suppression_insert(sqlite3 *db, stw_suppression *s, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    if (util_random_id("s_", 8, s->id, sizeof s->id) != 0)
        return stw_errorf(err, STW_INTERNAL, "random_failed", "the random generator failed");
    s->created_ms = util_now_ms();
    rc = store_prepare(db, &stmt,
                       "INSERT INTO suppressions(id, product, kind, value, reason, created_ms)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, s->product, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, s->kind);
    sqlite3_bind_text(stmt, 4, s->value, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, s->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, s->created_ms);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    sqlite3_finalize(stmt);
    return rc;
}

stw_code policy_suppression_lift(sqlite3 *db, const char *id, char product_out[STW_NAME_MAX + 1],
                                 stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "UPDATE suppressions SET lifted_ms = ?2 WHERE id = ?1 AND lifted_ms IS NULL"
                       " RETURNING product",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, util_now_ms());
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW:
        if (product_out != NULL)
            snprintf(product_out, STW_NAME_MAX + 1, "%s", store_col_text(stmt, 0));
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = store_error(db, err);
        break;
    case SQLITE_DONE:
        rc = stw_errorf(err, STW_NOT_FOUND, "unknown_suppression", "no active suppression '%s'",
                        id);
        break;
    default: rc = store_error(db, err); break;
    }
    sqlite3_finalize(stmt);
    return rc;
}

static void grant_from_row(sqlite3_stmt *stmt, stw_grant *g)
{
    cJSON *arr, *it;

    memset(g, 0, sizeof *g);
    snprintf(g->id, sizeof g->id, "%s", store_col_text(stmt, 0));
    snprintf(g->principal, sizeof g->principal, "%s", store_col_text(stmt, 1));
    if (store_col_text(stmt, 2))
        snprintf(g->product, sizeof g->product, "%s", store_col_text(stmt, 2));
    if (store_col_text(stmt, 3))
        snprintf(g->domain, sizeof g->domain, "%s", store_col_text(stmt, 3));
    g->purposes = (uint32_t)sqlite3_column_int64(stmt, 4);
    g->clearance = sqlite3_column_int(stmt, 5);
    arr = cJSON_Parse(store_col_text(stmt, 6));
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsString(it) && g->ncompartments < STW_MAX_LABELS)
            snprintf(g->compartments[g->ncompartments++], STW_LABEL_MAX + 1, "%s",
                     it->valuestring);
    }
    cJSON_Delete(arr);
    g->created_ms = sqlite3_column_int64(stmt, 7);
}

#define GRANT_COLS "id, principal, product, domain, purposes, clearance, compartments, created_ms"

static void supp_from_row(sqlite3_stmt *stmt, stw_suppression *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", store_col_text(stmt, 0));
    snprintf(s->product, sizeof s->product, "%s", store_col_text(stmt, 1));
    s->kind = sqlite3_column_int(stmt, 2);
    snprintf(s->value, sizeof s->value, "%s", store_col_text(stmt, 3));
    if (store_col_text(stmt, 4))
        snprintf(s->reason, sizeof s->reason, "%s", store_col_text(stmt, 4));
    s->created_ms = sqlite3_column_int64(stmt, 5);
}

#define SUPP_COLS "id, product, kind, value, reason, created_ms"

/* Run stmt and collect rows with fill() into a growing array of elem_size items. */
static stw_code collect(sqlite3 *db, sqlite3_stmt *stmt, size_t elem_size,
                        void (*fill)(sqlite3_stmt *, void *), void **out, size_t *n_out,
                        stw_error *err)
{
    unsigned char *arr = NULL;
    size_t n = 0, cap = 0;
    int step;

    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            unsigned char *p = realloc(arr, ncap * elem_size);
            if (p == NULL) {
                free(arr);
                return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            }
            arr = p;
            cap = ncap;
        }
        fill(stmt, arr + n * elem_size);
        n++;
    }
    if (step != SQLITE_DONE) {
        free(arr);
        return store_error(db, err);
    }
    *out = arr;
    *n_out = n;
    return STW_OK;
}

static void fill_grant(sqlite3_stmt *stmt, void *dst)
{
    grant_from_row(stmt, dst);
}

static void fill_supp(sqlite3_stmt *stmt, void *dst)
{
    supp_from_row(stmt, dst);
}

stw_code policy_grants_for(sqlite3 *db, const char *principal, const char *product,
                           const char *domain, int purpose, stw_grant **out, size_t *n_out,
                           stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    void *arr = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "SELECT " GRANT_COLS " FROM grants WHERE principal = ?1 AND"
                       " revoked_ms IS NULL AND (product = ?2 OR domain = ?3) AND"
                       " (purposes & ?4) != 0 ORDER BY id",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, product, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, domain, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, (int64_t)1 << purpose);
    rc = collect(db, stmt, sizeof(stw_grant), fill_grant, &arr, n_out, err);
    sqlite3_finalize(stmt);
    if (rc == STW_OK)
        *out = arr;
    return rc;
}

stw_code policy_suppressions_for(sqlite3 *db, const char *product, stw_suppression **out,
                                 size_t *n_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    void *arr = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "SELECT " SUPP_COLS " FROM suppressions WHERE product = ?1 AND"
                       " lifted_ms IS NULL ORDER BY id",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, product, -1, SQLITE_STATIC);
    rc = collect(db, stmt, sizeof(stw_suppression), fill_supp, &arr, n_out, err);
    sqlite3_finalize(stmt);
    if (rc == STW_OK)
        *out = arr;
    return rc;
}

stw_code policy_version(sqlite3 *db, int64_t *version_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt, "SELECT version FROM policy WHERE id = 1", err);
    if (rc != STW_OK)
        return rc;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        *version_out = sqlite3_column_int64(stmt, 0);
    else
        rc = store_error(db, err);
    sqlite3_finalize(stmt);
    return rc;
}

static const char *const supp_kinds[] = {"subject", "document_id", "chunk_id"};

/* The canonical form hashed into the policy hash (docs/policy.md): active grants and
 * suppressions, each sorted by id, fixed key order, purposes in enum order. */
static char *policy_canonical(const stw_policy *p)
{
    cJSON *root = cJSON_CreateObject(), *grants, *supps;
    char *out;

    if (root == NULL)
        return NULL;
    cJSON_AddNumberToObject(root, "version", (double)p->version);
    grants = cJSON_AddArrayToObject(root, "grants");
    for (size_t i = 0; grants && i < p->ngrants; i++) {
        const stw_grant *g = &p->grants[i];
        cJSON *o = cJSON_CreateObject(), *purposes, *comps;
        cJSON_AddItemToArray(grants, o);
        cJSON_AddStringToObject(o, "id", g->id);
        cJSON_AddStringToObject(o, "principal", g->principal);
        if (g->product[0])
            cJSON_AddStringToObject(o, "product", g->product);
        else
            cJSON_AddStringToObject(o, "domain", g->domain);
        purposes = cJSON_AddArrayToObject(o, "purposes");
        for (int b = 0; b < STW_PURPOSE_COUNT; b++)
            if (g->purposes & (1u << b))
                cJSON_AddItemToArray(purposes, cJSON_CreateString(stw_purpose_name(b)));
        cJSON_AddStringToObject(o, "clearance", stw_conf_name(g->clearance));
        comps = cJSON_AddArrayToObject(o, "compartments");
        for (size_t c = 0; c < g->ncompartments; c++)
            cJSON_AddItemToArray(comps, cJSON_CreateString(g->compartments[c]));
    }
    supps = cJSON_AddArrayToObject(root, "suppressions");
    for (size_t i = 0; supps && i < p->nsuppressions; i++) {
        const stw_suppression *s = &p->suppressions[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(supps, o);
        cJSON_AddStringToObject(o, "id", s->id);
        cJSON_AddStringToObject(o, "product", s->product);
        cJSON_AddStringToObject(o, supp_kinds[s->kind], s->value);
    }
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static stw_code read_lists(sqlite3 *db, stw_policy *p, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    void *arr = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "SELECT " GRANT_COLS " FROM grants WHERE revoked_ms IS NULL ORDER BY id",
                       err);
    if (rc != STW_OK)
        return rc;
    rc = collect(db, stmt, sizeof(stw_grant), fill_grant, &arr, &p->ngrants, err);
    sqlite3_finalize(stmt);
    if (rc != STW_OK)
        return rc;
    p->grants = arr;
    rc = store_prepare(db, &stmt,
                       "SELECT " SUPP_COLS " FROM suppressions WHERE lifted_ms IS NULL"
                       " ORDER BY id",
                       err);
    if (rc != STW_OK)
        return rc;
    arr = NULL;
    rc = collect(db, stmt, sizeof(stw_suppression), fill_supp, &arr, &p->nsuppressions, err);
    sqlite3_finalize(stmt);
    if (rc == STW_OK)
        p->suppressions = arr;
    return rc;
}

stw_code policy_bump(sqlite3 *db, int64_t *version_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_policy p;
    char *canon = NULL;
    unsigned char digest[SHA256_LEN];
    stw_code rc;

    memset(&p, 0, sizeof p);
    rc = policy_version(db, &p.version, err);
    if (rc != STW_OK)
        return rc;
    p.version++;
    rc = read_lists(db, &p, err);
    if (rc != STW_OK)
        goto done;
    canon = policy_canonical(&p);
    if (canon == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    util_sha256(canon, strlen(canon), digest);
    util_hash_str(digest, p.hash);
    rc = store_prepare(db, &stmt, "UPDATE policy SET version = ?1, hash = ?2 WHERE id = 1", err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_int64(stmt, 1, p.version);
    sqlite3_bind_text(stmt, 2, p.hash, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    *version_out = p.version;
done:
    sqlite3_finalize(stmt);
    cJSON_free(canon);
    free(p.grants);
    free(p.suppressions);
    return rc;
}

stw_code policy_read(sqlite3 *db, stw_policy **out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_policy *p = calloc(1, sizeof *p);
    stw_code rc;

    if (p == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    rc = store_prepare(db, &stmt, "SELECT version, hash FROM policy WHERE id = 1", err);
    if (rc != STW_OK)
        goto fail;
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        rc = store_error(db, err);
        goto fail;
    }
    p->version = sqlite3_column_int64(stmt, 0);
    snprintf(p->hash, sizeof p->hash, "%s", store_col_text(stmt, 1));
    sqlite3_finalize(stmt);
    stmt = NULL;
    rc = read_lists(db, p, err);
    if (rc != STW_OK)
        goto fail;
    if (p->hash[0] == '\0') { /* version 0: hash of the empty policy */
        char *canon = policy_canonical(p);
        unsigned char digest[SHA256_LEN];
        if (canon != NULL) {
            util_sha256(canon, strlen(canon), digest);
            util_hash_str(digest, p->hash);
            cJSON_free(canon);
        }
    }
    *out = p;
    return STW_OK;
fail:
    sqlite3_finalize(stmt);
    stw_policy_free(p);
    return rc;
}

void stw_policy_free(stw_policy *p)
{
    if (p == NULL)
        return;
    free(p->grants);
    free(p->suppressions);
    free(p);
}
