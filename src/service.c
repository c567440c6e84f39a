/* service.c - one entry point per use case: the stw_* API of include/steward.h.
 *
 * Each function checks the caller's roles, opens the transaction its use case needs, calls the
 * modules below (catalog, policy, search, audit over the store) and appends its audit event in
 * the same transaction, so a change and its record commit together or not at all. Nothing here
 * knows about HTTP or JSON request shapes. */
#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "catalog.h"
#include "journal.h"
#include "limits.h"
#include "policy.h"
#include "receipt_queue.h"
#include "search.h"
#include "store.h"
#include "util.h"

/* What a query resolved one product reference to (see struct qver), kept for the next query
 * with the same caller, purpose and reference while policy.generation (migration 3: bumped by
 * triggers on every change to products, versions, principals, grants and suppressions) stays
 * the same. Only successful resolutions are kept: a refusal is recorded every time. */
/* One resolved version of a query, with the policy that applies to it. */
struct qver {
    stw_product product;
    stw_version_info v;
    int64_t vid;
    stw_grant *grants;
    size_t ngrants;
    stw_suppression *supps;
    size_t nsupps;
    const struct vset *vs;
    struct plan_out plan;
};

struct rentry {
    char principal[STW_NAME_MAX + 1];
    int purpose;
    char product[STW_NAME_MAX + 1];
    char version[STW_NAME_MAX + 1]; /* "" unless pinned */
    int64_t as_of_ms;
    struct qver x; /* product description and terms NULL; vs and plan unused */
};

#define RCACHE_MAX 512 /* entries; a full cache starts over */

struct rcache {
    pthread_mutex_t mu;
    int64_t gen;       /* the generation every entry was read at; guarded by mu */
    struct rentry *e;  /* guarded by mu */
    size_t n;          /* guarded by mu */
};

struct stw_db {
    struct store *st;
    stw_options opt;
    struct vcache cache;
    struct rqueue *receipts; /* group commit of query receipts (no journal, or sync_full) */
    struct journal *journal; /* receipts appended to a file, indexed behind (journal.h) */
    struct rcache resolved;
};

void stw_options_default(stw_options *opt)
{
    memset(opt, 0, sizeof *opt); /* every field a later version adds starts at zero */
    opt->max_k = STW_DEFAULT_MAX_K;
    opt->max_batch = STW_DEFAULT_MAX_BATCH;
    opt->max_dimension = STW_DEFAULT_MAX_DIMENSION;
    opt->pool_size = STW_DEFAULT_POOL_SIZE;
    opt->audit_sync_full = 0;
    opt->hnsw_min_rows = STW_DEFAULT_HNSW_MIN_ROWS;
    opt->hnsw_m = STW_DEFAULT_HNSW_M;
    opt->hnsw_ef_construction = STW_DEFAULT_HNSW_EF_CONSTRUCTION;
    opt->hnsw_ef = STW_DEFAULT_HNSW_EF;
    opt->hnsw_ef_max = STW_DEFAULT_HNSW_EF_MAX;
    opt->exact_max_rows = STW_DEFAULT_EXACT_MAX_ROWS;
    opt->hnsw_min_selectivity = STW_DEFAULT_HNSW_MIN_SELECTIVITY;
    opt->strategy = STW_STRATEGY_AUTO;
    opt->two_hop_below = STW_DEFAULT_TWO_HOP_BELOW;
    opt->quantized_min_rows = STW_DEFAULT_QUANTIZED_MIN_ROWS;
    opt->binary_min_rows = STW_DEFAULT_BINARY_MIN_ROWS;
    opt->cells_max = STW_DEFAULT_CELLS_MAX;
    opt->cells_min_share = STW_DEFAULT_CELLS_MIN_SHARE;
    opt->rows_memory_max = STW_DEFAULT_ROWS_MEMORY_MAX;
    opt->scan_max_share = STW_DEFAULT_SCAN_MAX_SHARE;
    /* minimum necessary by default: research and public health read text only from
     * de-identified products; marketing never receives chunk text (docs/policy.md) */
    memset(opt->purpose_rules, 0, sizeof opt->purpose_rules);
    opt->purpose_rules[STW_PURPOSE_HRESCH].text = STW_TEXT_DEIDENTIFIED;
    opt->purpose_rules[STW_PURPOSE_PUBHLTH].text = STW_TEXT_DEIDENTIFIED;
    opt->purpose_rules[STW_PURPOSE_HMARKT].text = STW_TEXT_NONE;
}

int stw_purpose_rule_parse(stw_options *opt, const char *spec)
{
    char buf[128], *colon, *part, *save = NULL;
    int purpose;
    stw_purpose_rule rule;

    if (spec == NULL || strlen(spec) >= sizeof buf)
        return -1;
    snprintf(buf, sizeof buf, "%s", spec);
    colon = strchr(buf, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    purpose = stw_purpose_parse(buf);
    if (purpose < 0)
        return -1;
    rule = opt->purpose_rules[purpose];
    for (part = strtok_r(colon + 1, ",", &save); part != NULL; part = strtok_r(NULL, ",", &save)) {
        if (strncmp(part, "k=", 2) == 0) {
            char *end = NULL;
            unsigned long long k = strtoull(part + 2, &end, 10);
            if (end == part + 2 || *end != '\0' || k > 1000000)
                return -1;
            rule.max_k = (size_t)k;
        } else if (strcmp(part, "text=all") == 0) {
            rule.text = STW_TEXT_ALL;
        } else if (strcmp(part, "text=deidentified") == 0) {
            rule.text = STW_TEXT_DEIDENTIFIED;
        } else if (strcmp(part, "text=none") == 0) {
            rule.text = STW_TEXT_NONE;
        } else {
            return -1;
        }
    }
    opt->purpose_rules[purpose] = rule;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static stw_code require_role(const stw_principal *caller, unsigned roles, const char *what,
                             stw_error *err)
{
    if (caller != NULL && (caller->roles & roles) != 0)
        return STW_OK;
    return stw_errorf(err, STW_FORBIDDEN, "forbidden", "principal '%s' may not %s",
                      caller ? caller->id : "?", what);
}

/* admin, or owner whose domains include `domain` */
static stw_code require_owner(const stw_principal *caller, const char *domain, const char *what,
                              stw_error *err)
{
    if (caller != NULL && (caller->roles & STW_ROLE_ADMIN))
        return STW_OK;
    if (caller != NULL && (caller->roles & STW_ROLE_OWNER))
        for (size_t i = 0; i < caller->ndomains; i++)
            if (strcmp(caller->domains[i], domain) == 0)
                return STW_OK;
    return stw_errorf(err, STW_FORBIDDEN, "forbidden",
                      "principal '%s' may not %s in domain '%s'", caller ? caller->id : "?",
                      what, domain);
}

static int valid_label(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > STW_LABEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

/* Append an audit event in its own write transaction (for events with no other change). */
static stw_code audit_alone(stw_db *db, sqlite3 *c, const char *type, const char *principal,
                            const char *detail, stw_error *err)
{
    stw_code rc = store_begin_write(c, err);
    (void)db;
    if (rc == STW_OK)
        rc = audit_append(c, util_now_ms(), type, principal, detail, NULL, err);
    if (rc == STW_OK)
        rc = store_commit(c, err);
    store_rollback(c);
    return rc;
}

/* detail JSON built with cJSON; owned, free(). */
static char *detail_print(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- open / close / init ------------------------------------------------------------------ */

stw_code stw_init(const char *data_dir, char key_out[STW_KEY_MAX], stw_error *err)
{
    struct store *st = NULL;
    sqlite3 *c;
    stw_principal admin;
    char *detail = NULL;
    cJSON *o;
    stw_code rc;

    rc = store_open(data_dir, 1, 1, 1, &st, err);
    if (rc != STW_OK)
        return rc;
    memset(&admin, 0, sizeof admin);
    snprintf(admin.id, sizeof admin.id, "admin");
    admin.roles = STW_ROLE_ADMIN;
    c = store_acquire(st);
    rc = store_begin_write(c, err);
    if (rc == STW_OK)
        rc = policy_principal_insert(c, &admin, key_out, err);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "store_created");
    cJSON_AddStringToObject(o, "id", "admin");
    cJSON_AddItemToObject(o, "roles", cJSON_CreateStringArray((const char *[]){"admin"}, 1));
    detail = detail_print(o);
    if (rc == STW_OK)
        rc = audit_append(c, util_now_ms(), "principal", NULL, detail, NULL, err);
    if (rc == STW_OK)
        rc = store_commit(c, err);
    store_release(st, c);
    store_close(st);
    free(detail);
    return rc;
}

/* Needs mu (or sole ownership). */
static void rcache_clear(struct rcache *rc)
{
    for (size_t i = 0; i < rc->n; i++) {
        free(rc->e[i].x.grants);
        free(rc->e[i].x.supps);
    }
    rc->n = 0;
}

static int rentry_is(const struct rentry *e, const char *principal, int purpose,
                     const stw_product_ref *ref)
{
    return e->purpose == purpose && e->as_of_ms == ref->as_of_ms &&
           strcmp(e->product, ref->product) == 0 &&
           strcmp(e->version, ref->version ? ref->version : "") == 0 &&
           strcmp(e->principal, principal) == 0;
}

static void *dup_array(const void *a, size_t n, size_t size)
{
    void *p;
    if (n == 0)
        return NULL;
    p = malloc(n * size);
    if (p != NULL)
        memcpy(p, a, n * size);
    return p;
}

/* A copy of src's resolution (the product, version and policy; not vs or plan) with arrays of
 * its own; 0, or -1 when out of memory (nothing allocated then). */
static int resolution_copy(struct qver *dst, const struct qver *src)
{
    memset(dst, 0, sizeof *dst);
    dst->grants = dup_array(src->grants, src->ngrants, sizeof *src->grants);
    dst->supps = dup_array(src->supps, src->nsupps, sizeof *src->supps);
    if ((src->ngrants > 0 && dst->grants == NULL) || (src->nsupps > 0 && dst->supps == NULL)) {
        free(dst->grants);
        free(dst->supps);
        dst->grants = NULL;
        dst->supps = NULL;
        return -1;
    }
    dst->product = src->product;
    dst->product.description = dst->product.terms = NULL;
    dst->v = src->v;
    dst->vid = src->vid;
    dst->ngrants = src->ngrants;
    dst->nsupps = src->nsupps;
    return 0;
}

/* 1 and *x filled (owned copies) when gen's resolution of (principal, purpose, ref) is kept. */
static int rcache_get(struct rcache *rc, int64_t gen, const char *principal, int purpose,
                      const stw_product_ref *ref, struct qver *x)
{
    int hit = 0;

    pthread_mutex_lock(&rc->mu);
    for (size_t i = 0; rc->gen == gen && i < rc->n && !hit; i++) {
        if (!rentry_is(&rc->e[i], principal, purpose, ref))
            continue;
        if (resolution_copy(x, &rc->e[i].x) != 0)
            break; /* out of memory: resolve from the store */
        hit = 1;
    }
    pthread_mutex_unlock(&rc->mu);
    return hit;
}

static void rcache_put(struct rcache *rc, int64_t gen, const char *principal, int purpose,
                       const stw_product_ref *ref, const struct qver *x)
{
    struct rentry *e;

    pthread_mutex_lock(&rc->mu);
    if (gen < rc->gen) /* read before a change another query has already seen */
        goto done;
    if (gen > rc->gen || rc->n == RCACHE_MAX) {
        rcache_clear(rc);
        rc->gen = gen;
    }
    if (rc->e == NULL && (rc->e = calloc(RCACHE_MAX, sizeof *rc->e)) == NULL)
        goto done;
    for (size_t i = 0; i < rc->n; i++)
        if (rentry_is(&rc->e[i], principal, purpose, ref))
            goto done; /* another thread kept it first */
    e = &rc->e[rc->n];
    memset(e, 0, sizeof *e);
    if (resolution_copy(&e->x, x) != 0)
        goto done;
    snprintf(e->principal, sizeof e->principal, "%s", principal);
    e->purpose = purpose;
    snprintf(e->product, sizeof e->product, "%s", ref->product);
    snprintf(e->version, sizeof e->version, "%s", ref->version ? ref->version : "");
    e->as_of_ms = ref->as_of_ms;
    rc->n++;
done:
    pthread_mutex_unlock(&rc->mu);
}

stw_code stw_open(const char *data_dir, const stw_options *opt, stw_db **out, stw_error *err)
{
    stw_db *db = calloc(1, sizeof *db);
    sqlite3 *c;
    stw_code rc;

    if (db == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    if (opt != NULL)
        db->opt = *opt;
    else
        stw_options_default(&db->opt);
    rc = store_open(data_dir, 0, db->opt.pool_size, db->opt.audit_sync_full, &db->st, err);
    if (rc != STW_OK) {
        free(db);
        return rc;
    }
    rc = rq_open(db->st, &db->receipts, err);
    /* synchronous=FULL asks every receipt to reach the disk before its answer: the group
     * commit does that (one fsync per group); the journal would fsync per record */
    if (rc == STW_OK && !db->opt.audit_sync_full)
        rc = journal_open(db->st, &db->journal, err);
    if (rc != STW_OK) {
        rq_close(db->receipts);
        store_close(db->st);
        free(db);
        return rc;
    }
    vcache_init(&db->cache);
    /* no quantised scan, no codes: their 8-bit and 1-bit records (33 % of the vectors' memory
     * at d = 384) and, on graph versions, the walk's blocks (46 % more) are not built */
    db->cache.no_codes = db->opt.quantized_min_rows == 0;
    db->cache.no_walk = db->opt.walk_blocks_off;
    db->cache.rows_memory_max = db->opt.rows_memory_max;
    pthread_mutex_init(&db->resolved.mu, NULL);
    db->resolved.gen = -1;
    c = store_acquire(db->st);
    catalog_cleanup(c, data_dir);
    store_release(db->st, c);
    *out = db;
    return STW_OK;
}

void stw_close(stw_db *db)
{
    if (db == NULL)
        return;
    vcache_free(&db->cache);
    rcache_clear(&db->resolved);
    free(db->resolved.e);
    pthread_mutex_destroy(&db->resolved.mu);
    journal_close(db->journal); /* first: it indexes what is left through the store */
    rq_close(db->receipts);
    store_close(db->st);
    free(db);
}

/* ---- principals --------------------------------------------------------------------------- */

stw_code stw_authenticate(stw_db *db, const char *api_key, stw_principal *out, stw_error *err)
{
    sqlite3 *c = store_acquire(db->st);
    stw_code rc = policy_authenticate(c, store_cache(db->st, c), api_key, out, err);

    if (rc == STW_UNAUTHENTICATED) {
        cJSON *o = cJSON_CreateObject();
        char *detail;
        cJSON_AddStringToObject(o, "reason", api_key ? "unknown_key" : "missing_key");
        detail = detail_print(o);
        /* best effort: a refused call must not fail differently because the trail is full */
        audit_alone(db, c, "auth_failed", NULL, detail, NULL);
        free(detail);
    }
    store_release(db->st, c);
    return rc;
}

stw_code stw_principal_create(stw_db *db, const stw_principal *caller, const stw_principal *p,
                              char key_out[STW_KEY_MAX], stw_error *err)
{
    sqlite3 *c;
    cJSON *o, *roles, *domains;
    char *detail;
    stw_code rc;

    rc = require_role(caller, STW_ROLE_ADMIN, "create principals", err);
    if (rc != STW_OK)
        return rc;
    if (!stw_valid_principal_name(p->id))
        return stw_errorf(err, STW_INVALID, "invalid_name",
                          "'id' must match [a-z0-9][a-z0-9._-]{0,63}");
    if (p->roles == 0 || (p->roles & ~15u) != 0)
        return stw_errorf(err, STW_INVALID, "invalid_roles",
                          "'roles' must be a non-empty list of admin, owner, consumer, auditor");
    if (p->ndomains > STW_MAX_DOMAINS)
        return stw_errorf(err, STW_INVALID, "invalid_domains", "'domains' has too many entries");
    for (size_t i = 0; i < p->ndomains; i++)
        if (!stw_valid_name(p->domains[i]))
            return stw_errorf(err, STW_INVALID, "invalid_name",
                              "'domains[%zu]' must match [a-z0-9][a-z0-9-]{0,63}", i);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", p->id);
    roles = cJSON_AddArrayToObject(o, "roles");
    for (unsigned b = 1; b <= STW_ROLE_AUDITOR; b <<= 1)
        if (p->roles & b)
            cJSON_AddItemToArray(roles, cJSON_CreateString(stw_role_name(b)));
    domains = cJSON_AddArrayToObject(o, "domains");
    for (size_t i = 0; i < p->ndomains; i++)
        cJSON_AddItemToArray(domains, cJSON_CreateString(p->domains[i]));
    detail = detail_print(o);
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc == STW_OK)
        rc = policy_principal_insert(c, p, key_out, err);
    if (rc == STW_OK)
        rc = audit_append(c, util_now_ms(), "principal", caller->id, detail, NULL, err);
    if (rc == STW_OK)
        rc = store_commit(c, err);
    store_release(db->st, c);
    free(detail);
    return rc;
}

/* ---- policy ------------------------------------------------------------------------------- */

/* Finish a policy change inside the caller's write transaction: bump the policy version,
 * append the audit event `type` with `detail` (owned; gets "policy_version" added) and
 * commit. *pv_out is set only once the commit succeeded. */
static stw_code policy_change_commit(sqlite3 *c, const stw_principal *caller, const char *type,
                                     cJSON *detail, int64_t *pv_out, stw_error *err)
{
    int64_t pv = 0;
    char *json = NULL;
    stw_code rc;

    rc = detail != NULL ? policy_bump(c, &pv, err)
                        : stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    if (rc == STW_OK) {
        cJSON_AddNumberToObject(detail, "policy_version", (double)pv);
        json = cJSON_PrintUnformatted(detail);
        rc = json != NULL ? audit_append(c, util_now_ms(), type, caller->id, json, NULL, err)
                          : stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    }
    if (rc == STW_OK)
        rc = store_commit(c, err);
    if (rc == STW_OK)
        *pv_out = pv;
    cJSON_Delete(detail);
    cJSON_free(json);
    return rc;
}

static cJSON *grant_detail(const stw_grant *g)
{
    cJSON *o = cJSON_CreateObject(), *a;
    cJSON_AddStringToObject(o, "grant", g->id);
    cJSON_AddStringToObject(o, "principal", g->principal);
    if (g->product[0])
        cJSON_AddStringToObject(o, "product", g->product);
    else
        cJSON_AddStringToObject(o, "domain", g->domain);
    a = cJSON_AddArrayToObject(o, "purposes");
    for (int b = 0; b < STW_PURPOSE_COUNT; b++)
        if (g->purposes & (1u << b))
            cJSON_AddItemToArray(a, cJSON_CreateString(stw_purpose_name(b)));
    cJSON_AddStringToObject(o, "clearance", stw_conf_name(g->clearance));
    a = cJSON_AddArrayToObject(o, "compartments");
    for (size_t i = 0; i < g->ncompartments; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(g->compartments[i]));
    return o;
}

stw_code stw_grant_create(stw_db *db, const stw_principal *caller, stw_grant *g,
                          int64_t *policy_version_out, stw_error *err)
{
    sqlite3 *c;
    stw_product prod;
    stw_code rc;

    rc = require_role(caller, STW_ROLE_ADMIN, "change grants", err);
    if (rc != STW_OK)
        return rc;
    if ((g->product[0] != '\0') == (g->domain[0] != '\0'))
        return stw_errorf(err, STW_INVALID, "invalid_grant",
                          "a grant names exactly one of 'product' or 'domain'");
    if (g->product[0] && !stw_valid_name(g->product))
        return stw_errorf(err, STW_INVALID, "invalid_name", "'product' is not a valid name");
    if (g->domain[0] && !stw_valid_name(g->domain))
        return stw_errorf(err, STW_INVALID, "invalid_name", "'domain' is not a valid name");
    if (g->purposes == 0 || (g->purposes >> STW_PURPOSE_COUNT) != 0)
        return stw_errorf(err, STW_INVALID, "invalid_purposes",
                          "'purposes' must be a non-empty list of purpose codes");
    if (g->clearance < STW_CONF_U || g->clearance > STW_CONF_V)
        return stw_errorf(err, STW_INVALID, "invalid_clearance",
                          "'clearance' must be one of U L M N R V");
    if (g->ncompartments > STW_MAX_LABELS)
        return stw_errorf(err, STW_INVALID, "too_many_labels", "'compartments' is too long");
    for (size_t i = 0; i < g->ncompartments; i++)
        if (!valid_label(g->compartments[i]))
            return stw_errorf(err, STW_INVALID, "invalid_label",
                              "'compartments[%zu]' must match [A-Za-z0-9_-]{1,32}", i);
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc != STW_OK)
        goto done;
    switch (policy_principal_exists(c, g->principal)) {
    case 1: break;
    case 0:
        rc = stw_errorf(err, STW_NOT_FOUND, "unknown_principal", "no principal '%s'",
                        g->principal);
        goto done;
    default: rc = store_error(c, err); goto done;
    }
    if (g->product[0]) {
        rc = catalog_product_get(c, g->product, &prod, err);
        if (rc != STW_OK)
            goto done;
        catalog_product_clear(&prod);
    }
    rc = policy_grant_insert(c, g, err);
    if (rc == STW_OK)
        rc = policy_change_commit(c, caller, "grant", grant_detail(g), policy_version_out, err);
done:
    store_release(db->st, c);
    return rc;
}

stw_code stw_grant_revoke(stw_db *db, const stw_principal *caller, const char *grant_id,
                          int64_t *policy_version_out, stw_error *err)
{
    sqlite3 *c;
    cJSON *o;
    stw_code rc;

    rc = require_role(caller, STW_ROLE_ADMIN, "change grants", err);
    if (rc != STW_OK)
        return rc;
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc == STW_OK)
        rc = policy_grant_revoke(c, grant_id, err);
    if (rc == STW_OK) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "grant", grant_id);
        rc = policy_change_commit(c, caller, "revoke", o, policy_version_out, err);
    }
    store_release(db->st, c);
    return rc;
}

stw_code stw_suppression_create(stw_db *db, const stw_principal *caller, stw_suppression *s,
                                int64_t *policy_version_out, stw_error *err)
{
    static const char *const kinds[] = {"subject", "document_id", "chunk_id"};
    sqlite3 *c;
    stw_product prod;
    cJSON *o;
    stw_code rc;

    rc = require_role(caller, STW_ROLE_ADMIN, "add suppressions", err);
    if (rc != STW_OK)
        return rc;
    if (s->kind < STW_SUPP_SUBJECT || s->kind > STW_SUPP_CHUNK || s->value[0] == '\0')
        return stw_errorf(err, STW_INVALID, "invalid_suppression",
                          "a suppression names exactly one of 'subject', 'document_id' or"
                          " 'chunk_id'");
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc != STW_OK)
        goto done;
    rc = catalog_product_get(c, s->product, &prod, err);
    if (rc != STW_OK)
        goto done;
    catalog_product_clear(&prod);
    rc = policy_suppression_insert(c, s, err);
    if (rc != STW_OK)
        goto done;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "suppression", s->id);
    cJSON_AddStringToObject(o, "product", s->product);
    /* the suppressed key is an identifier, not PHI content; the reason stays in the policy */
    cJSON_AddStringToObject(o, kinds[s->kind], s->value);
    rc = policy_change_commit(c, caller, "suppress", o, policy_version_out, err);
done:
    store_release(db->st, c);
    return rc;
}

stw_code stw_suppression_lift(stw_db *db, const stw_principal *caller, const char *suppression_id,
                              int64_t *policy_version_out, stw_error *err)
{
    sqlite3 *c;
    char product[STW_NAME_MAX + 1] = "";
    cJSON *o;
    stw_code rc;

    rc = require_role(caller, STW_ROLE_ADMIN, "lift suppressions", err);
    if (rc != STW_OK)
        return rc;
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc == STW_OK)
        rc = policy_suppression_lift(c, suppression_id, product, err);
    if (rc == STW_OK) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "suppression", suppression_id);
        cJSON_AddStringToObject(o, "product", product);
        rc = policy_change_commit(c, caller, "unsuppress", o, policy_version_out, err);
    }
    store_release(db->st, c);
    return rc;
}

stw_code stw_policy_get(stw_db *db, const stw_principal *caller, stw_policy **out,
                        stw_error *err)
{
    sqlite3 *c;
    stw_code rc;

    rc = require_role(caller, STW_ROLE_ADMIN | STW_ROLE_AUDITOR, "read the policy", err);
    if (rc != STW_OK)
        return rc;
    c = store_acquire(db->st);
    rc = store_begin_read(c, err);
    if (rc == STW_OK)
        rc = policy_read(c, out, err);
    store_release(db->st, c);
    return rc;
}

/* ---- catalog ------------------------------------------------------------------------------ */

stw_code stw_product_create(stw_db *db, const stw_principal *caller, const stw_product *p,
                            stw_error *err)
{
    const stw_contract *ct = &p->contract;
    sqlite3 *c;
    cJSON *o;
    char *detail;
    stw_code rc;

    if (!stw_valid_name(p->name))
        return stw_errorf(err, STW_INVALID, "invalid_name",
                          "'name' must match [a-z0-9][a-z0-9-]{0,63}");
    if (!stw_valid_name(p->domain))
        return stw_errorf(err, STW_INVALID, "invalid_name",
                          "'domain' must match [a-z0-9][a-z0-9-]{0,63}");
    rc = require_owner(caller, p->domain, "create products", err);
    if (rc != STW_OK)
        return rc;
    if (p->owner[0] != '\0' && !stw_valid_principal_name(p->owner))
        return stw_errorf(err, STW_INVALID, "invalid_name", "'owner' is not a valid name");
    if (ct->embedding_model[0] == '\0')
        return stw_errorf(err, STW_INVALID, "missing_field",
                          "'contract.embedding_model' is required");
    if (ct->dimension < 1 || ct->dimension > db->opt.max_dimension)
        return stw_errorf(err, STW_INVALID, "invalid_dimension",
                          "'contract.dimension' must be an integer in 1..%zu",
                          db->opt.max_dimension);
    if (stw_metric_name(ct->metric) == NULL)
        return stw_errorf(err, STW_INVALID, "invalid_metric",
                          "'contract.metric' must be cosine, ip or l2");
    for (size_t i = 0; i < ct->ncompartments; i++)
        if (!valid_label(ct->compartments[i]))
            return stw_errorf(err, STW_INVALID, "invalid_label",
                              "'contract.compartments[%zu]' must match [A-Za-z0-9_-]{1,32}", i);
    for (size_t i = 0; i < ct->nprovenance_required; i++)
        if (!valid_label(ct->provenance_required[i]))
            return stw_errorf(err, STW_INVALID, "invalid_field_name",
                              "'contract.provenance_required[%zu]' is not a field name", i);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "product", p->name);
    cJSON_AddStringToObject(o, "domain", p->domain);
    detail = detail_print(o);
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc == STW_OK) {
        stw_product copy = *p;
        if (copy.owner[0] == '\0') /* default owner: the creating principal */
            snprintf(copy.owner, sizeof copy.owner, "%s", caller->id);
        rc = catalog_product_insert(c, &copy, err);
    }
    if (rc == STW_OK)
        rc = audit_append(c, util_now_ms(), "product", caller->id, detail, NULL, err);
    if (rc == STW_OK)
        rc = store_commit(c, err);
    store_release(db->st, c);
    free(detail);
    return rc;
}

stw_code stw_product_get(stw_db *db, const stw_principal *caller, const char *name,
                         stw_product **out, stw_error *err)
{
    stw_product *p;
    sqlite3 *c;
    stw_code rc;

    (void)caller; /* the catalog is readable by every authenticated principal */
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    c = store_acquire(db->st);
    rc = catalog_product_get(c, name, p, err);
    store_release(db->st, c);
    if (rc != STW_OK) {
        free(p);
        return rc;
    }
    *out = p;
    return STW_OK;
}

stw_code stw_product_list(stw_db *db, const stw_principal *caller, stw_product **out,
                          size_t *n_out, stw_error *err)
{
    sqlite3 *c = store_acquire(db->st);
    stw_code rc;

    (void)caller;
    rc = catalog_product_list(c, out, n_out, err);
    store_release(db->st, c);
    return rc;
}

/* Loads product `name` into *p and checks the caller may write to it. */
static stw_code writable_product(sqlite3 *c, const stw_principal *caller, const char *name,
                                 const char *what, stw_product *p, stw_error *err)
{
    stw_code rc = catalog_product_get(c, name, p, err);
    if (rc != STW_OK)
        return rc;
    rc = require_owner(caller, p->domain, what, err);
    if (rc != STW_OK)
        catalog_product_clear(p);
    return rc;
}

static char *version_detail(const char *product, const char *version)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "product", product);
    cJSON_AddStringToObject(o, "version", version);
    return detail_print(o);
}

stw_code stw_version_create(stw_db *db, const stw_principal *caller, const char *product,
                            const char *version, stw_version_info *out, stw_error *err)
{
    sqlite3 *c;
    stw_product p;
    char *detail = NULL;
    stw_code rc;

    if (!stw_valid_version_name(version))
        return stw_errorf(err, STW_INVALID, "invalid_name",
                          "'version' must match [A-Za-z0-9._-]{1,64}");
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc != STW_OK)
        goto done;
    rc = writable_product(c, caller, product, "create versions", &p, err);
    if (rc != STW_OK)
        goto done;
    catalog_product_clear(&p);
    rc = catalog_version_insert(c, product, version, out, err);
    if (rc == STW_OK) {
        detail = version_detail(product, version);
        rc = audit_append(c, util_now_ms(), "version", caller->id, detail, NULL, err);
    }
    if (rc == STW_OK)
        rc = store_commit(c, err);
done:
    store_release(db->st, c);
    free(detail);
    return rc;
}

stw_code stw_version_get(stw_db *db, const stw_principal *caller, const char *product,
                         const char *version, stw_version_info *out, stw_error *err)
{
    sqlite3 *c = store_acquire(db->st);
    stw_product p;
    stw_code rc;

    (void)caller;
    rc = store_begin_read(c, err);
    if (rc == STW_OK)
        rc = catalog_product_get(c, product, &p, err);
    if (rc == STW_OK) {
        catalog_product_clear(&p);
        rc = catalog_version_get(c, product, version, out, NULL, err);
    }
    store_release(db->st, c);
    return rc;
}

stw_code stw_version_list(stw_db *db, const stw_principal *caller, const char *product,
                          stw_version_info **out, size_t *n_out, stw_error *err)
{
    sqlite3 *c = store_acquire(db->st);
    stw_product p;
    stw_code rc;

    (void)caller;
    rc = store_begin_read(c, err);
    if (rc == STW_OK)
        rc = catalog_product_get(c, product, &p, err);
    if (rc == STW_OK) {
        catalog_product_clear(&p);
        rc = catalog_version_list(c, product, out, n_out, err);
    }
    store_release(db->st, c);
    return rc;
}

stw_code stw_chunks_add(stw_db *db, const stw_principal *caller, const char *product,
                        const char *version, const stw_chunk *chunks, size_t n,
                        size_t *accepted_out, size_t *unchanged_out, stw_error *err)
{
    sqlite3 *c;
    stw_product p;
    stw_version_info v;
    int64_t vid;
    size_t acc = 0, unch = 0;
    int have_p = 0;
    cJSON *o;
    char *detail = NULL;
    stw_code rc;

    if (n == 0)
        return stw_errorf(err, STW_INVALID, "missing_field",
                          "'chunks' must be a non-empty array");
    if (n > db->opt.max_batch)
        return stw_errorf(err, STW_TOO_LARGE, "batch_too_large",
                          "'chunks' has %zu chunks; at most %zu per batch", n,
                          db->opt.max_batch);
    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc != STW_OK)
        goto done;
    rc = writable_product(c, caller, product, "load products", &p, err);
    if (rc != STW_OK)
        goto done;
    have_p = 1;
    rc = catalog_version_head(c, product, version, &v, &vid, err);
    if (rc == STW_OK)
        rc = catalog_chunks_add(c, &p, &v, vid, chunks, n, &acc, &unch, err);
    if (rc != STW_OK)
        goto done;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "product", product);
    cJSON_AddStringToObject(o, "version", version);
    cJSON_AddNumberToObject(o, "accepted", (double)acc);
    cJSON_AddNumberToObject(o, "unchanged", (double)unch);
    detail = detail_print(o);
    rc = audit_append(c, util_now_ms(), "ingest", caller->id, detail, NULL, err);
    if (rc == STW_OK)
        rc = store_commit(c, err);
    if (rc == STW_OK) {
        *accepted_out = acc;
        *unchanged_out = unch;
    }
done:
    if (have_p)
        catalog_product_clear(&p);
    store_release(db->st, c);
    free(detail);
    return rc;
}

stw_code stw_version_publish(stw_db *db, const stw_principal *caller, const char *product,
                             const char *version, stw_version_info *out, stw_error *err)
{
    struct publish_opts po = {db->opt.hnsw_min_rows, db->opt.hnsw_m,
                              db->opt.hnsw_ef_construction, db->opt.cells_max};
    struct publish_stage stage;
    sqlite3 *c;
    stw_product p;
    stw_version_info v;
    int have_p = 0;
    cJSON *o;
    char *detail = NULL;
    stw_code rc;

    memset(&stage, 0, sizeof stage);
    c = store_acquire(db->st);
    /* Step 1 reads a snapshot and builds the files without the write lock, so queries (whose
     * receipts need the lock) keep flowing during a long HNSW build. */
    rc = store_begin_read(c, err);
    if (rc != STW_OK)
        goto done;
    rc = writable_product(c, caller, product, "publish versions", &p, err);
    if (rc != STW_OK)
        goto done;
    have_p = 1;
    rc = catalog_publish_stage(c, store_dir(db->st), &p, version, &po, &stage, err);
    store_rollback(c);
    if (rc != STW_OK)
        goto done;
    rc = store_begin_write(c, err);
    if (rc == STW_OK)
        rc = catalog_publish_commit(c, &p, version, &stage, &v, err);
    if (rc != STW_OK)
        goto done;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "product", product);
    cJSON_AddStringToObject(o, "version", version);
    cJSON_AddNumberToObject(o, "chunks", (double)v.chunks);
    cJSON_AddStringToObject(o, "content_hash", v.content_hash);
    cJSON_AddBoolToObject(o, "hnsw", stage.has_index);
    detail = detail_print(o);
    rc = audit_append(c, util_now_ms(), "publish", caller->id, detail, NULL, err);
    if (rc == STW_OK)
        rc = store_commit(c, err);
    if (rc == STW_OK)
        *out = v;
    /* On a failed commit the version stays a draft; its folder is never served and is
     * replaced by the next publish or removed at the next open (catalog_cleanup). */
done:
    catalog_publish_abort(&stage);
    if (have_p)
        catalog_product_clear(&p);
    store_release(db->st, c);
    free(detail);
    return rc;
}

stw_code stw_version_verify(stw_db *db, const stw_principal *caller, const char *product,
                            const char *version, char **json_out, int *ok_out, stw_error *err)
{
    sqlite3 *c = store_acquire(db->st);
    stw_product p;
    int have_p = 0;
    stw_code rc;

    rc = store_begin_read(c, err);
    if (rc == STW_OK)
        rc = catalog_product_get(c, product, &p, err);
    if (rc == STW_OK) {
        have_p = 1;
        if (caller == NULL || !(caller->roles & STW_ROLE_AUDITOR))
            rc = require_owner(caller, p.domain, "verify versions", err);
    }
    if (rc == STW_OK)
        rc = catalog_verify(c, store_dir(db->st), &p, version, json_out, ok_out, err);
    store_rollback(c);
    if (have_p)
        catalog_product_clear(&p);
    store_release(db->st, c);
    return rc;
}

stw_code stw_version_retire(stw_db *db, const stw_principal *caller, const char *product,
                            const char *version, stw_version_info *out, stw_error *err)
{
    sqlite3 *c;
    stw_product p;
    stw_version_info v;
    char *detail = NULL;
    stw_code rc;

    c = store_acquire(db->st);
    rc = store_begin_write(c, err);
    if (rc != STW_OK)
        goto done;
    rc = writable_product(c, caller, product, "retire versions", &p, err);
    if (rc != STW_OK)
        goto done;
    catalog_product_clear(&p);
    rc = catalog_retire(c, product, version, &v, err);
    if (rc == STW_OK) {
        detail = version_detail(product, version);
        rc = audit_append(c, util_now_ms(), "retire", caller->id, detail, NULL, err);
    }
    if (rc == STW_OK)
        rc = store_commit(c, err);
    if (rc == STW_OK)
        *out = v;
done:
    store_release(db->st, c);
    free(detail);
    return rc;
}

/* ---- query -------------------------------------------------------------------------------- */


/* A hit of the merged ranking. */
struct mhit {
    float key;
    uint32_t row;
    uint32_t q; /* index into the qver array */
};


static int mhit_cmp_ctx(const struct mhit *a, const struct mhit *b, const struct qver *qv)
{
    int c;
    if (a->key != b->key)
        return a->key > b->key ? -1 : 1;
    c = strcmp(qv[a->q].product.name, qv[b->q].product.name);
    if (c == 0)
        c = strcmp(qv[a->q].v.name, qv[b->q].v.name);
    if (c == 0)
        c = a->row < b->row ? -1 : a->row > b->row ? 1 : 0;
    return c;
}

/* insertion sort with context: merged lists are at most nversions * k long and nearly sorted */
static void mhit_sort(struct mhit *h, size_t n, const struct qver *qv)
{
    for (size_t i = 1; i < n; i++) {
        struct mhit x = h[i];
        size_t j = i;
        while (j > 0 && mhit_cmp_ctx(&x, &h[j - 1], qv) < 0) {
            h[j] = h[j - 1];
            j--;
        }
        h[j] = x;
    }
}

static void qvers_free(struct qver *qv, size_t n)
{
    for (size_t i = 0; qv != NULL && i < n; i++) {
        catalog_product_clear(&qv[i].product);
        free(qv[i].grants);
        free(qv[i].supps);
    }
    free(qv);
}

void stw_answer_free(stw_answer *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->nresults; i++) {
        free(a->results[i].chunk_id);
        free(a->results[i].text);
        free(a->results[i].labels_json);
        free(a->results[i].provenance_json);
        free(a->results[i].metadata_json);
    }
    free(a->results);
    free(a->versions);
    free(a->plan);
    free(a);
}

static char *labels_json(int conf, const char *compartments)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "confidentiality", stw_conf_name(conf));
    cJSON_AddItemToObject(o, "compartments", cJSON_Parse(compartments ? compartments : "[]"));
    return detail_print(o);
}

static stw_code deny(stw_db *db, sqlite3 *c, const stw_principal *caller, const char *product,
                     int purpose, stw_error *err)
{
    cJSON *o = cJSON_CreateObject();
    char *detail;
    cJSON_AddStringToObject(o, "product", product);
    cJSON_AddStringToObject(o, "purpose", stw_purpose_name(purpose));
    cJSON_AddStringToObject(o, "reason", "not_entitled");
    detail = detail_print(o);
    audit_alone(db, c, "query_denied", caller->id, detail, NULL);
    free(detail);
    return stw_errorf(err, STW_FORBIDDEN, "not_entitled",
                      "principal '%s' has no grant on product '%s' for purpose %s", caller->id,
                      product, stw_purpose_name(purpose));
}

/* Validate the request shape (no store access). */
static stw_code query_check(const stw_db *db, const stw_query *q, stw_error *err)
{
    if (q->k < 1 || q->k > db->opt.max_k)
        return stw_errorf(err, STW_INVALID, "k_out_of_range", "'k' must be an integer in 1..%zu",
                          db->opt.max_k);
    if (stw_purpose_name(q->purpose) == NULL)
        return stw_errorf(err, STW_INVALID, "unknown_purpose", "'purpose' is not a known code");
    if (db->opt.purpose_rules[q->purpose].max_k > 0 &&
        q->k > db->opt.purpose_rules[q->purpose].max_k)
        return stw_errorf(err, STW_INVALID, "k_out_of_range",
                          "'k' must be at most %zu for purpose %s (minimum necessary)",
                          db->opt.purpose_rules[q->purpose].max_k,
                          stw_purpose_name(q->purpose));
    if (q->nproducts < 1 || q->nproducts > STW_MAX_PRODUCTS_PER_QUERY)
        return stw_errorf(err, STW_INVALID, "invalid_products",
                          "'products' must list 1..%u products", STW_MAX_PRODUCTS_PER_QUERY);
    if (q->vector == NULL || q->dim == 0)
        return stw_errorf(err, STW_INVALID, "missing_field", "'vector' is required");
    for (size_t i = 0; i < q->dim; i++)
        if (!isfinite(q->vector[i]))
            return stw_errorf(err, STW_INVALID, "not_finite",
                              "'vector[%zu]' is not a finite number", i);
    if (q->filter.nsource_systems > STW_MAX_FILTER_VALUES ||
        q->filter.nsections > STW_MAX_FILTER_VALUES)
        return stw_errorf(err, STW_INVALID, "filter_too_large",
                          "'filter' lists may hold at most %u values", STW_MAX_FILTER_VALUES);
    if (q->purpose == STW_PURPOSE_ETREAT && (q->reason == NULL || q->reason[0] == '\0'))
        return stw_errorf(err, STW_INVALID, "reason_required",
                          "'reason' is required for break-glass purpose ETREAT");
    if (q->reason != NULL && strlen(q->reason) > STW_MAX_REASON_BYTES)
        return stw_errorf(err, STW_INVALID, "field_too_large", "'reason' is over %u bytes",
                          STW_MAX_REASON_BYTES);
    return STW_OK;
}

/* Resolve products and their policy in one read transaction: 404, 400, 403, 410. */
/* The policy version and generation in the caller's read transaction. */
static stw_code policy_stamp(struct stmt_cache *sc, sqlite3 *c, int64_t *version, int64_t *gen,
                             stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc = store_take(sc, c, &stmt, "SELECT version, generation FROM policy WHERE id = 1",
                             err);
    if (rc != STW_OK)
        return rc;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        *version = sqlite3_column_int64(stmt, 0);
        *gen = sqlite3_column_int64(stmt, 1);
    } else {
        rc = store_error(c, err);
    }
    store_give(sc, stmt);
    return rc;
}

static stw_code query_resolve(stw_db *db, sqlite3 *c, const stw_principal *caller,
                              const stw_query *q, struct qver **out, size_t *n_out,
                              int64_t *pv_out, stw_error *err)
{
    struct qver *qv = calloc(q->nproducts, sizeof *qv);
    size_t n = 0;
    const char *denied = NULL;
    char denied_buf[STW_NAME_MAX + 1];
    int64_t gen = 0;
    stw_code rc;

    if (qv == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    rc = store_exec_cached(store_cache(db->st, c), c, "BEGIN", err);
    if (rc == STW_OK)
        rc = policy_stamp(store_cache(db->st, c), c, pv_out, &gen, err);
    for (size_t i = 0; rc == STW_OK && i < q->nproducts; i++) {
        const stw_product_ref *ref = &q->products[i];
        struct qver *x = &qv[n];
        int kept;
        if (ref->product == NULL || !stw_valid_name(ref->product)) {
            rc = stw_errorf(err, STW_INVALID, "invalid_name",
                            "'products[%zu]' is not a valid product name", i);
            break;
        }
        kept = rcache_get(&db->resolved, gen, caller->id, q->purpose, ref, x);
        if (!kept) {
            rc = catalog_product_get(c, ref->product, &x->product, err);
            if (rc != STW_OK)
                break;
        }
        n++;
        if (x->product.contract.dimension != q->dim) {
            rc = stw_errorf(err, STW_INVALID, "wrong_dimension",
                            "'vector' has dimension %zu, product '%s' has %zu", q->dim,
                            ref->product, x->product.contract.dimension);
            break;
        }
        if (n > 1) {
            const stw_contract *a = &qv[0].product.contract, *b = &x->product.contract;
            if (strcmp(a->embedding_model, b->embedding_model) != 0 ||
                a->metric != b->metric) {
                rc = stw_errorf(err, STW_INVALID, "contract_mismatch",
                                "products '%s' and '%s' differ in embedding model or metric;"
                                " one query needs one vector space",
                                qv[0].product.name, x->product.name);
                break;
            }
        }
        if (!kept) {
            rc = policy_grants_for(c, caller->id, x->product.name, x->product.domain,
                                   q->purpose, &x->grants, &x->ngrants, err);
            if (rc != STW_OK)
                break;
            if (x->ngrants == 0) {
                snprintf(denied_buf, sizeof denied_buf, "%s", x->product.name);
                denied = denied_buf;
                break;
            }
            rc = catalog_resolve(c, ref, &x->v, &x->vid, err);
            if (rc != STW_OK)
                break;
            rc = policy_suppressions_for(c, x->product.name, &x->supps, &x->nsupps, err);
            if (rc != STW_OK)
                break;
            rcache_put(&db->resolved, gen, caller->id, q->purpose, ref, x);
        }
        for (size_t j = 0; j + 1 < n; j++) {
            if (qv[j].vid == x->vid) { /* the same version named twice: search it once */
                catalog_product_clear(&x->product);
                free(x->grants);
                free(x->supps);
                memset(x, 0, sizeof *x);
                n--;
                break;
            }
        }
    }
    if (!sqlite3_get_autocommit(c)) /* read-only transaction */
        store_exec_cached(store_cache(db->st, c), c, "ROLLBACK", NULL);
    if (rc == STW_OK && denied != NULL)
        rc = deny(db, c, caller, denied, q->purpose, err);
    if (rc != STW_OK) {
        qvers_free(qv, n);
        return rc;
    }
    *out = qv;
    *n_out = n;
    return STW_OK;
}

/* Fill one result's chunk fields from the store. */
static stw_code fetch_result(sqlite3 *c, sqlite3_stmt *stmt, const struct qver *x,
                             const char *chunk_id, unsigned include, stw_result *r,
                             struct audit_hit *h, char **prov_keep, stw_error *err)
{
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, x->vid);
    sqlite3_bind_text(stmt, 2, chunk_id, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_ROW)
        return store_error(c, err);
    r->chunk_id = util_strdup(chunk_id);
    if (include & STW_INC_TEXT)
        r->text = util_strdup(store_col_text(stmt, 0));
    if (include & STW_INC_LABELS)
        r->labels_json = labels_json(sqlite3_column_int(stmt, 1), store_col_text(stmt, 2));
    if (include & STW_INC_PROVENANCE)
        r->provenance_json = util_strdup(store_col_text(stmt, 3));
    if (include & STW_INC_METADATA)
        r->metadata_json = util_strdup(store_col_text(stmt, 4));
    /* keep the receipt's provenance keys alive after the statement moves on */
    prov_keep[0] = util_strdup(store_col_text(stmt, 5));
    prov_keep[1] = util_strdup(store_col_text(stmt, 6));
    prov_keep[2] = util_strdup(store_col_text(stmt, 7));
    h->source_system = prov_keep[0];
    h->document_id = prov_keep[1];
    h->subject = prov_keep[2];
    if (r->chunk_id == NULL || ((include & STW_INC_TEXT) && r->text == NULL))
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    return STW_OK;
}

static char *json_member(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v != NULL ? cJSON_PrintUnformatted(v) : NULL;
}

/* Fill one result from the version's rows file (in memory or mapped, no SQLite); STW_NOT_FOUND
 * when the version has no rows file. Strings are malloc'd like fetch_result's. */
static stw_code fetch_from_rows(const struct vset *vs, size_t row, unsigned include,
                                stw_result *r, struct audit_hit *h, stw_error *err)
{
    const char *json = NULL;
    size_t len = 0;
    cJSON *o;

    int got = vset_row_json(vs, row, &json, &len);

    if (got > 0)
        return STW_NOT_FOUND;
    if (got < 0)
        return stw_errorf(err, STW_INDEX, "version_files", "row %zu is missing", row);
    o = cJSON_ParseWithLength(json, len);
    if (o == NULL)
        return stw_errorf(err, STW_INDEX, "version_files", "row %zu is not JSON", row);
    r->chunk_id = util_strdup(vset_chunk_id(vs, row));
    if (include & STW_INC_TEXT) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
        r->text = util_strdup(cJSON_IsString(t) ? t->valuestring : "");
    }
    /* cJSON allocates with malloc here (no hooks installed), so free() releases these */
    if (include & STW_INC_LABELS)
        r->labels_json = json_member(o, "labels");
    if (include & STW_INC_PROVENANCE)
        r->provenance_json = json_member(o, "provenance");
    if (include & STW_INC_METADATA)
        r->metadata_json = json_member(o, "metadata");
    cJSON_Delete(o);
    h->source_system = vset_row_key(vs, row, 0);
    h->document_id = vset_row_key(vs, row, 1);
    h->subject = vset_row_key(vs, row, 2);
    if (r->chunk_id == NULL || ((include & STW_INC_TEXT) && r->text == NULL))
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    return STW_OK;
}

stw_code stw_query_run(stw_db *db, const stw_principal *caller, const stw_query *q_in,
                       stw_answer **out, stw_error *err)
{
    stw_query qk = *q_in; /* q_in with k lowered to the purpose's cap when k was not chosen */
    const stw_query *q = &qk;
    sqlite3 *c = NULL;
    struct qver *qv = NULL;
    size_t nqv = 0, nm = 0, total_allowed = 0;
    struct mhit *merged = NULL;
    struct hit *hits = NULL;
    float *query = NULL;
    stw_answer *a = NULL;
    struct audit_hit *ahits = NULL;
    char **keep = NULL;
    sqlite3_stmt *stmt = NULL;
    cJSON *vers = NULL;
    char *vers_json = NULL, vhash[STW_HASH_STR_MAX];
    unsigned char digest[SHA256_LEN];
    struct audit_receipt rec;
    const struct plan_opts po = {db->opt.exact_max_rows, db->opt.hnsw_min_selectivity,
                                 db->opt.hnsw_ef,        db->opt.hnsw_ef_max,
                                 db->opt.strategy,       db->opt.two_hop_below,
                                 db->opt.quantized_min_rows,
                                 db->opt.binary_min_rows,
                                 db->opt.scan_max_share,
                                 db->opt.cells_min_share};
    stw_code rc;

    if (qk.k_default && qk.purpose >= 0 && stw_purpose_name(qk.purpose) != NULL) {
        size_t cap = db->opt.purpose_rules[qk.purpose].max_k;
        if (cap > 0 && qk.k > cap)
            qk.k = cap;
    }
    rc = require_role(caller, STW_ROLE_CONSUMER | STW_ROLE_ADMIN, "query", err);
    if (rc == STW_OK)
        rc = query_check(db, q, err);
    if (rc != STW_OK)
        return rc;
    c = store_acquire(db->st);
    a = calloc(1, sizeof *a);
    if (a == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    rc = query_resolve(db, c, caller, q, &qv, &nqv, &a->policy_version, err);
    if (rc != STW_OK)
        goto done;

    /* the query in the versions' space: cosine vectors were normalised at publish */
    query = malloc(q->dim * sizeof *query);
    hits = malloc(q->k * sizeof *hits);
    merged = malloc(nqv * q->k * sizeof *merged);
    if (query == NULL || hits == NULL || merged == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    memcpy(query, q->vector, q->dim * sizeof *query);
    if (qv[0].product.contract.metric == STW_METRIC_COSINE) {
        double norm = 0;
        for (size_t i = 0; i < q->dim; i++)
            norm += (double)query[i] * query[i];
        if (!(norm > 0)) {
            rc = stw_errorf(err, STW_INVALID, "zero_vector",
                            "'vector' has zero norm (metric cosine)");
            goto done;
        }
        norm = sqrt(norm);
        for (size_t i = 0; i < q->dim; i++)
            query[i] = (float)(query[i] / norm);
    }
    for (size_t i = 0; i < nqv; i++) {
        struct access acc = {qv[i].ngrants, qv[i].grants, qv[i].nsupps, qv[i].supps,
                             &q->filter};
        size_t nh = 0;
        rc = vcache_get(&db->cache, c, store_dir(db->st), &qv[i].product, &qv[i].v, qv[i].vid,
                        &qv[i].vs, err);
        if (rc == STW_OK)
            rc = search_version(qv[i].vs, &acc, &po, query, q->k, hits, &nh, &qv[i].plan, err);
        if (rc != STW_OK)
            goto done;
        total_allowed += qv[i].plan.allowed;
        for (size_t j = 0; j < nh; j++) {
            merged[nm].key = hits[j].key;
            merged[nm].row = hits[j].row;
            merged[nm].q = (uint32_t)i;
            nm++;
        }
    }
    mhit_sort(merged, nm, qv);
    if (nm > q->k)
        nm = q->k;

    /* the answer */
    if (util_time_id("q_", a->query_id, sizeof a->query_id) != 0) {
        rc = stw_errorf(err, STW_INTERNAL, "random_failed", "the random generator failed");
        goto done;
    }
    a->complete = nm == (total_allowed < q->k ? total_allowed : q->k);
    a->versions = calloc(nqv, sizeof *a->versions);
    a->results = calloc(nm ? nm : 1, sizeof *a->results);
    ahits = calloc(nm ? nm : 1, sizeof *ahits);
    keep = calloc(3 * (nm ? nm : 1), sizeof *keep);
    vers = cJSON_CreateArray();
    if (a->versions == NULL || a->results == NULL || ahits == NULL || keep == NULL ||
        vers == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    a->nversions = nqv;
    for (size_t i = 0; i < nqv; i++) {
        cJSON *o = cJSON_CreateObject();
        snprintf(a->versions[i].product, sizeof a->versions[i].product, "%s",
                 qv[i].product.name);
        snprintf(a->versions[i].version, sizeof a->versions[i].version, "%s", qv[i].v.name);
        cJSON_AddStringToObject(o, "product", qv[i].product.name);
        cJSON_AddStringToObject(o, "version", qv[i].v.name);
        cJSON_AddItemToArray(vers, o);
    }
    /* the plan always (metrics read it); the answer renders it for "explain":true only */
    if (nqv > 0) {
        a->plan = calloc(nqv, sizeof *a->plan);
        if (a->plan == NULL) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto done;
        }
        a->nplan = nqv;
        for (size_t i = 0; i < nqv; i++) {
            stw_plan_step *s = &a->plan[i];
            snprintf(s->product, sizeof s->product, "%s", qv[i].product.name);
            snprintf(s->version, sizeof s->version, "%s", qv[i].v.name);
            s->strategy = qv[i].plan.strategy;
            s->allowed = qv[i].plan.allowed;
            s->scanned = qv[i].plan.scanned;
            s->ef = (int)qv[i].plan.ef;
            s->rows = qv[i].v.chunks;
        }
    }
    rc = store_take(store_cache(db->st, c), c, &stmt,
                    "SELECT text, conf, compartments, provenance, metadata, source_system,"
                    " document_id, subject FROM chunks WHERE version_id = ?1 AND chunk_id = ?2",
                    err);
    if (rc != STW_OK)
        goto done;
    /* the answer's rows are cold (the search has filled the caches): their misses are
     * requested together, not one row after another (docs/search.md, session 8) */
    for (int stage = 0; stage < 2; stage++)
        for (size_t i = 0; i < nm; i++)
            vset_prefetch_row(qv[merged[i].q].vs, merged[i].row, stage);
    for (size_t i = 0; i < nm; i++) {
        const struct qver *x = &qv[merged[i].q];
        stw_result *r = &a->results[i];
        r->rank = i + 1;
        r->score = search_score(x->product.contract.metric, merged[i].key);
        snprintf(r->product, sizeof r->product, "%s", x->product.name);
        snprintf(r->version, sizeof r->version, "%s", x->v.name);
        a->nresults = i + 1;
        {
            int text_rule = db->opt.purpose_rules[q->purpose].text;
            unsigned include = q->include;
            if ((include & STW_INC_TEXT) &&
                (text_rule == STW_TEXT_NONE ||
                 (text_rule == STW_TEXT_DEIDENTIFIED && !x->product.deidentified))) {
                include &= ~(unsigned)STW_INC_TEXT;
                a->text_withheld = 1;
            }
            rc = fetch_from_rows(x->vs, merged[i].row, include, r, &ahits[i], err);
            if (rc == STW_NOT_FOUND) /* no rows file (published before it existed) */
                rc = fetch_result(c, stmt, x, vset_chunk_id(x->vs, merged[i].row), include, r,
                                  &ahits[i], &keep[3 * i], err);
        }
        if (rc != STW_OK)
            goto done;
        ahits[i].rank = r->rank;
        ahits[i].score = r->score;
        ahits[i].product = r->product;
        ahits[i].version = r->version;
        ahits[i].chunk_id = r->chunk_id;
    }
    store_give(store_cache(db->st, c), stmt);
    stmt = NULL;

    /* the receipt, durable before the answer leaves */
    vers_json = cJSON_PrintUnformatted(vers);
    if (vers_json == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    util_sha256(q->vector, q->dim * sizeof(float), digest);
    util_hash_str(digest, vhash);
    memset(&rec, 0, sizeof rec);
    rec.query_id = a->query_id;
    rec.principal = caller->id;
    rec.purpose = stw_purpose_name(q->purpose);
    rec.reason = q->reason;
    rec.at_ms = util_now_ms();
    rec.policy_version = a->policy_version;
    rec.k = q->k;
    rec.vector_sha256 = vhash;
    rec.filter_json = q->filter_json;
    rec.versions_json = vers_json;
    rec.nhits = nm;
    rec.hits = ahits;
    rec.break_glass = q->purpose == STW_PURPOSE_ETREAT;
    rec.text_withheld = a->text_withheld;
    /* audit_receipts_off is for benchmarks only (stw_options); serve never sets it */
    store_release(db->st, c); /* the receipt goes through the queue's own connection */
    c = NULL;
    {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = db->opt.audit_receipts_off ? STW_OK
             : db->journal != NULL      ? journal_append(db->journal, &rec, err)
                                        : rq_commit(db->receipts, &rec, err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (!db->opt.audit_receipts_off)
            a->receipt_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                            (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    }
    if (rc != STW_OK) {
        char why[STW_ERR_MSG_MAX]; /* err->message can't be both source and target */
        snprintf(why, sizeof why, "%s", err ? err->message : "store error");
        stw_errorf(err, STW_UNAVAILABLE, "audit_unavailable",
                   "the audit receipt could not be written (%s); the answer is withheld", why);
        rc = STW_UNAVAILABLE;
        goto done;
    }
    *out = a;
    a = NULL;
done:
    if (c != NULL)
        store_give(store_cache(db->st, c), stmt);
    else
        sqlite3_finalize(stmt);
    if (c != NULL)
        store_release(db->st, c);
    for (size_t i = 0; keep != NULL && i < 3 * (nm ? nm : 1); i++)
        free(keep[i]);
    free(keep);
    free(ahits);
    cJSON_Delete(vers);
    cJSON_free(vers_json);
    free(query);
    free(hits);
    free(merged);
    qvers_free(qv, nqv);
    stw_answer_free(a);
    return rc;
}

/* ---- audit -------------------------------------------------------------------------------- */

void stw_receipt_stats_get(stw_db *db, stw_receipt_stats *out)
{
    struct journal_stats js;

    memset(out, 0, sizeof *out);
    if (db->journal == NULL)
        return;
    journal_stats(db->journal, &js);
    out->journal = 1;
    out->appended = js.records;
    out->indexed = js.indexed;
    out->skipped = js.skipped;
    out->batches = js.batches;
    out->backlog_bytes = js.bytes_pending;
    out->index_seconds = js.index_s;
}

static stw_code audit_read(stw_db *db, const stw_principal *caller, sqlite3 **c,
                           stw_error *err)
{
    stw_code rc = require_role(caller, STW_ROLE_ADMIN | STW_ROLE_AUDITOR, "read the audit trail",
                               err);
    if (rc == STW_OK && db->journal != NULL) /* every answer given so far is in the trail */
        rc = journal_sync(db->journal, err);
    if (rc != STW_OK)
        return rc;
    *c = store_acquire(db->st);
    rc = store_begin_read(*c, err);
    if (rc != STW_OK) {
        store_release(db->st, *c);
        *c = NULL;
    }
    return rc;
}

stw_code stw_audit_query_get(stw_db *db, const stw_principal *caller, const char *query_id,
                             char **json_out, stw_error *err)
{
    sqlite3 *c = NULL;
    stw_code rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_query_json(c, query_id, json_out, err);
    store_release(db->st, c);
    return rc;
}

stw_code stw_audit_events(stw_db *db, const stw_principal *caller, const stw_event_filter *f,
                          char **json_out, stw_error *err)
{
    sqlite3 *c = NULL;
    stw_code rc;

    if (f->limit < 1 || f->limit > STW_AUDIT_PAGE_MAX)
        return stw_errorf(err, STW_INVALID, "invalid_limit", "'limit' must be in 1..%u",
                          STW_AUDIT_PAGE_MAX);
    rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_events_json(c, f, json_out, err);
    store_release(db->st, c);
    return rc;
}

stw_code stw_audit_verify(stw_db *db, const stw_principal *caller, char **json_out,
                          stw_error *err)
{
    sqlite3 *c = NULL;
    int ok = 0;
    stw_code rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_verify_json(c, NULL, json_out, &ok, err);
    store_release(db->st, c);
    return rc;
}

/* 1 if s is "sha256:" and 64 lowercase hex digits, as util_hash_str writes them */
static int valid_hash_str(const char *s)
{
    if (strncmp(s, "sha256:", 7) != 0 || strnlen(s, STW_HASH_STR_MAX) != 7 + 2 * SHA256_LEN)
        return 0;
    for (s += 7; *s != '\0'; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

stw_code stw_audit_verify_pinned(stw_db *db, const stw_principal *caller,
                                 const stw_audit_pin *pin, char **json_out, stw_error *err)
{
    sqlite3 *c = NULL;
    int ok = 0;
    stw_code rc;

    if (pin != NULL && (pin->events < 1 || !valid_hash_str(pin->head)))
        return stw_errorf(err, STW_INVALID, "invalid_pin",
                          "a pin is an event count >= 1 and a \"sha256:\" + 64 hex head");
    rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_verify_json(c, pin, json_out, &ok, err);
    store_release(db->st, c);
    return rc;
}

stw_code stw_audit_head(stw_db *db, const stw_principal *caller, char **json_out,
                        stw_error *err)
{
    sqlite3 *c = NULL;
    stw_code rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_head_json(c, json_out, err);
    store_release(db->st, c);
    return rc;
}

stw_code stw_audit_export_fhir(stw_db *db, const stw_principal *caller, int64_t since_ms,
                               int64_t until_ms, stw_emit_fn emit, void *ctx, stw_error *err)
{
    sqlite3 *c = NULL;
    stw_code rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_export_fhir(c, since_ms, until_ms, emit, ctx, err);
    store_release(db->st, c);
    return rc;
}

stw_code stw_audit_disclosures(stw_db *db, const stw_principal *caller, const char *subject,
                               int64_t since_ms, int64_t until_ms, char **json_out,
                               stw_error *err)
{
    sqlite3 *c = NULL;
    stw_code rc;

    if (subject == NULL || subject[0] == '\0')
        return stw_errorf(err, STW_INVALID, "missing_field", "'subject' is required");
    rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_disclosures_json(c, subject, since_ms, until_ms, json_out, err);
    store_release(db->st, c);
    return rc;
}

stw_code stw_usage(stw_db *db, const stw_principal *caller, const char *group_by,
                   int64_t since_ms, int64_t until_ms, char **json_out, stw_error *err)
{
    sqlite3 *c = NULL;
    stw_code rc = audit_read(db, caller, &c, err);
    if (rc != STW_OK)
        return rc;
    rc = audit_usage_json(c, group_by ? group_by : "principal", since_ms, until_ms, json_out,
                          err);
    store_release(db->st, c);
    return rc;
}
