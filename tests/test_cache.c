/* test_cache.c - the query path's caches never outlive the facts they rest on.
 *
 * Two library handles on one store: A plays the server (its resolution cache and the loaded
 * version's allow-set cache warm up with repeated queries), B plays another process (a
 * second `steward serve`, or `steward ingest --publish`): it shares nothing in memory with
 * A, so A can only learn of B's changes through the store (policy.generation, migration 3).
 * After each change by B, A's next query must reflect it:
 *   1. a revoked grant: 403 not_entitled;
 *   2. a new grant with a higher clearance: the newly visible rows appear;
 *   3. a suppressed chunk: gone from the answer (the allow-set cache keys on suppressions);
 *   4. a newly published version: answers come from it ("latest");
 *   5. that version retired: answers come from v1 again;
 *   6. a lifted suppression: the chunk is back.
 * Each step first runs the same query twice on A so that its caches hold the old state.
 * Last, a third handle with synchronous=FULL (--audit-sync full) answers queries too, and the
 * audit chain written through all three verifies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "steward.h"

#define N 40
#define D 4

static float vecs[N][D];
static char ids[N][16];

static void add_chunks(stw_db *db, const stw_principal *admin, const char *version, size_t n)
{
    stw_chunk ch[N];
    size_t acc = 0, unch = 0;
    stw_version_info vi;
    stw_error err;

    memset(ch, 0, sizeof ch);
    for (size_t i = 0; i < n; i++) {
        ch[i].id = ids[i];
        ch[i].text = "synthetic";
        ch[i].vector = vecs[i];
        ch[i].dim = D;
        ch[i].confidentiality = i % 2 ? STW_CONF_R : STW_CONF_N; /* odd rows restricted */
        ch[i].subject = "patient-1";
        ch[i].created_ms = STW_TIME_NONE;
    }
    CHECK(stw_version_create(db, admin, "notes", version, &vi, &err) == STW_OK);
    CHECK(stw_chunks_add(db, admin, "notes", version, ch, n, &acc, &unch, &err) == STW_OK);
    CHECKF(stw_version_publish(db, admin, "notes", version, &vi, &err) == STW_OK, "%s",
           err.message);
}

/* Runs the query on db twice (the second from warm caches); returns the status of the second
 * and fills version/count/has(chunk) from its answer. */
static stw_code query2(stw_db *db, const stw_principal *who, char *version, size_t *count,
                       const char *chunk, int *has)
{
    static const float v[D] = {1, 0.5f, 0.25f, 0.125f};
    stw_product_ref ref = {"notes", NULL, STW_TIME_NONE};
    stw_code rc = STW_OK;

    *count = 0;
    *has = 0;
    version[0] = '\0';
    for (int round = 0; round < 2; round++) {
        stw_query q;
        stw_answer *a = NULL;
        stw_error err;
        memset(&q, 0, sizeof q);
        q.vector = v;
        q.dim = D;
        q.k = 100;
        q.purpose = STW_PURPOSE_TREAT;
        q.nproducts = 1;
        q.products = &ref;
        q.filter.created_from = q.filter.created_to = STW_TIME_NONE;
        q.include = STW_INC_ALL;
        rc = stw_query_run(db, who, &q, &a, &err);
        if (rc == STW_OK && round == 1) {
            *count = a->nresults;
            snprintf(version, STW_NAME_MAX + 1, "%s", a->nversions ? a->versions[0].version : "");
            for (size_t i = 0; i < a->nresults; i++)
                *has |= strcmp(a->results[i].chunk_id, chunk) == 0;
        }
        stw_answer_free(a);
    }
    return rc;
}

int main(void)
{
    char dir[] = "/tmp/steward-test-cache-XXXXXX", path[128], key[STW_KEY_MAX];
    char ckey[STW_KEY_MAX], version[STW_NAME_MAX + 1], cmd[192];
    stw_db *a = NULL, *b = NULL;
    stw_principal admin_a, admin_b, rag;
    stw_grant g, g2;
    stw_suppression sp;
    stw_version_info vi;
    stw_error err;
    int64_t pv;
    size_t count;
    int has;

    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof path, "%s/store", dir);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "c%03d", i);
        for (int j = 0; j < D; j++)
            vecs[i][j] = (float)((i * 7 + j * 13) % 17) / 17.0f + 0.05f;
    }
    if (!CHECK(stw_init(path, key, &err) == STW_OK) ||
        !CHECK(stw_open(path, NULL, &a, &err) == STW_OK) ||
        !CHECK(stw_open(path, NULL, &b, &err) == STW_OK) ||
        !CHECK(stw_authenticate(a, key, &admin_a, &err) == STW_OK) ||
        !CHECK(stw_authenticate(b, key, &admin_b, &err) == STW_OK))
        goto out;
    {
        stw_product p;
        stw_principal c;
        memset(&p, 0, sizeof p);
        snprintf(p.name, sizeof p.name, "notes");
        snprintf(p.domain, sizeof p.domain, "clinical");
        snprintf(p.contract.embedding_model, sizeof p.contract.embedding_model, "m");
        p.contract.dimension = D;
        p.contract.metric = STW_METRIC_COSINE;
        CHECK(stw_product_create(b, &admin_b, &p, &err) == STW_OK);
        add_chunks(b, &admin_b, "v1", N);
        memset(&c, 0, sizeof c);
        snprintf(c.id, sizeof c.id, "rag");
        c.roles = STW_ROLE_CONSUMER;
        CHECK(stw_principal_create(b, &admin_b, &c, ckey, &err) == STW_OK);
        CHECK(stw_authenticate(a, ckey, &rag, &err) == STW_OK);
        memset(&g, 0, sizeof g);
        snprintf(g.principal, sizeof g.principal, "rag");
        snprintf(g.product, sizeof g.product, "notes");
        g.purposes = 1u << STW_PURPOSE_TREAT;
        g.clearance = STW_CONF_N;
        CHECK(stw_grant_create(b, &admin_b, &g, &pv, &err) == STW_OK);
    }
    CHECK(query2(a, &rag, version, &count, ids[4], &has) == STW_OK);
    CHECK_EQ_INT(count, N / 2); /* clearance N: the even rows */
    CHECK_EQ_STR(version, "v1");

    /* 1. revoked by B */
    CHECK(stw_grant_revoke(b, &admin_b, g.id, &pv, &err) == STW_OK);
    CHECK_EQ_INT(query2(a, &rag, version, &count, ids[4], &has), STW_FORBIDDEN);

    /* 2. a higher clearance granted by B */
    g2 = g;
    g2.id[0] = '\0';
    g2.clearance = STW_CONF_V;
    CHECK(stw_grant_create(b, &admin_b, &g2, &pv, &err) == STW_OK);
    CHECK(query2(a, &rag, version, &count, ids[3], &has) == STW_OK);
    CHECK_EQ_INT(count, N);
    CHECK(has); /* an odd, restricted row */

    /* 3. a chunk suppressed by B */
    memset(&sp, 0, sizeof sp);
    snprintf(sp.product, sizeof sp.product, "notes");
    sp.kind = STW_SUPP_CHUNK;
    snprintf(sp.value, sizeof sp.value, "%s", ids[3]);
    CHECK(stw_suppression_create(b, &admin_b, &sp, &pv, &err) == STW_OK);
    CHECK(query2(a, &rag, version, &count, ids[3], &has) == STW_OK);
    CHECK_EQ_INT(count, N - 1);
    CHECK(!has);

    /* 4. a new version published by B */
    add_chunks(b, &admin_b, "v2", N / 4);
    CHECK(query2(a, &rag, version, &count, ids[3], &has) == STW_OK);
    CHECK_EQ_STR(version, "v2");
    CHECK_EQ_INT(count, N / 4 - 1);

    /* 5. ... and retired by B */
    CHECK(stw_version_retire(b, &admin_b, "notes", "v2", &vi, &err) == STW_OK);
    CHECK(query2(a, &rag, version, &count, ids[3], &has) == STW_OK);
    CHECK_EQ_STR(version, "v1");
    CHECK_EQ_INT(count, N - 1);

    /* 6. the suppression lifted by B */
    CHECK(stw_suppression_lift(b, &admin_b, sp.id, &pv, &err) == STW_OK);
    CHECK(query2(a, &rag, version, &count, ids[3], &has) == STW_OK);
    CHECK_EQ_INT(count, N);
    CHECK(has);

    /* 7. receipts committed with synchronous=FULL, and the chain of it all */
    {
        stw_options opt;
        stw_db *c = NULL;
        stw_principal rag_c, admin_c;
        char *json = NULL;
        stw_options_default(&opt);
        opt.audit_sync_full = 1;
        if (CHECK(stw_open(path, &opt, &c, &err) == STW_OK) &&
            CHECK(stw_authenticate(c, ckey, &rag_c, &err) == STW_OK) &&
            CHECK(stw_authenticate(c, key, &admin_c, &err) == STW_OK)) {
            for (int i = 0; i < 5; i++)
                CHECK(query2(c, &rag_c, version, &count, ids[3], &has) == STW_OK);
            CHECK_EQ_INT(count, N);
            CHECK(stw_audit_verify(c, &admin_c, &json, &err) == STW_OK);
            CHECKF(json != NULL && strstr(json, "\"ok\":true") != NULL, "verify: %s",
                   json ? json : err.message);
            free(json);
        }
        stw_close(c);
    }
out:
    stw_close(a);
    stw_close(b);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("cache");
}
