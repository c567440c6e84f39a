/* test_oracle.c - the entitlement oracle: random data, random policy, random queries over HTTP,
 * each answer compared with a brute-force evaluation of the access rule
 * (shared/design/architecture.md, "The access rule") over the data this test generated itself.
 *
 * A chunk is visible iff ONE grant of the principal covers its product (or the product's
 * domain), lists the purpose, has clearance >= the chunk's confidentiality and holds every
 * compartment of the chunk; the chunk is not suppressed (subject / document / chunk id, per
 * product, all versions); and it matches the request's filter (subject equality, source_system
 * and section membership, created_from inclusive, created_to exclusive, no created_at = no
 * match when a time bound is given).  A query naming a product that no grant covers for the
 * purpose is 403 not_entitled naming that product; a rule resolving to a retired version 410.
 *
 * For a 200 the answer must hold exactly min(k, |visible|) results, none outside the visible
 * set (counted separately as leaks), best first by the brute-force score (cosine similarity of
 * the raw vectors, dot product, or Euclidean distance ascending), scores within 1e-4, ties
 * within 1e-5 in either order, and "complete": true.
 *
 * Seed: printed at start; set STW_ORACLE_SEED to replay.  STW_ORACLE_QUERIES sets the count.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "harness.h"

#define MAX_DIM      16
#define NGROUPS      4 /* the last one is the big product */
#define PER_GROUP    2 /* products per group, at most */
#define NPRODUCTS    7
#define MAX_VERSIONS 2
#define NPRINCIPALS  7
#define MAX_GRANTS   64
#define MAX_SUPP     32
#define NSUBJECTS    20
#define NDOCS        70
#define NCOMP        4
#define NPURPOSES    6
#define MAX_REPORTS  12

static const char *const COMPS[NCOMP] = {"PSY", "HIV", "SUD", "ETH"};
static const char *const CONFS[6] = {"U", "L", "M", "N", "R", "V"};
static const char *const SOURCES[3] = {"ehr", "lab", "pharm"};
static const char *const SECTIONS[4] = {"assessment", "plan", "history", "results"};
static const char *const DOMAINS[3] = {"clinical", "labs", "pharmacy"};
/* The last purpose is never granted: queries with it are always 403. */
static const char *const PURPOSES[NPURPOSES] = {"TREAT",  "ETREAT",  "HPAYMT",
                                                "HRESCH", "PUBHLTH", "HMARKT"};
#define NGRANTABLE (NPURPOSES - 1)

struct group {
    const char *metric;
    size_t dim;
    int first, count; /* products[first .. first + count) */
    int big;          /* one version large enough to get an HNSW graph */
};
static const struct group GROUPS[NGROUPS] = {
    {"cosine", 16, 0, 2, 0}, {"ip", 8, 2, 2, 0}, {"l2", 12, 4, 2, 0}, {"cosine", 8, 6, 1, 1}};
/* Rows of the big product's version: over the server's HNSW threshold (src/limits.h,
 * STW_DEFAULT_HNSW_MIN_ROWS = 20000), so queries with large allow-sets take the graph path,
 * where the ranking may be approximate but nothing outside the allow-set may ever appear.
 * STW_ORACLE_BIG_ROWS overrides; 0 leaves the big product out. */
static long big_rows = 24000;
static int ngroups = NGROUPS, nproducts = NPRODUCTS;

struct ochunk {
    char id[64];
    float v[MAX_DIM];
    int conf;
    unsigned comps; /* bit i: COMPS[i] */
    int subject, source, section, doc;
    int64_t created; /* ms; INT64_MIN: no created_at */
};

struct oversion {
    char name[24];
    int retired;
    size_t n;
    struct ochunk *chunks;
    char published_at[48];
    int64_t published_ms; /* INT64_MIN if the server's value could not be parsed */
};

struct oproduct {
    char name[16];
    int domain, group;
    int nversions;
    struct oversion v[MAX_VERSIONS];
};

struct ogrant {
    int principal;
    int product; /* -1 for a domain grant */
    int domain;  /* -1 for a product grant */
    unsigned purposes;
    int clearance;
    unsigned comps;
    int active;
    char id[128];
};

enum supp_kind { SUPP_SUBJECT, SUPP_DOC, SUPP_CHUNK };
struct osupp {
    int product;
    int kind;
    int subject, doc;
    char chunk_id[64];
};

static th_server srv;
static struct oproduct products[NPRODUCTS];
static char *keys[NPRINCIPALS];
static struct ogrant grants[MAX_GRANTS];
static int ngrants;
static struct osupp supps[MAX_SUPP];
static int nsupps;
static long policy_version = -1;

static long n_queries, n_leaks, n_mismatches, n_ok200, n_403, n_410, n_empty, n_full;
static long n_receipts;
/* Answers whose ranking may be approximate (graph path), per group: count, summed recall@k
 * against the brute force, explained plans that took the graph. */
static long n_approx[NGROUPS], n_graph[NGROUPS];
static double recall_sum[NGROUPS];
/* STEWARD_STRATEGY=hnsw (inherited by the server) forces the graph even on small versions:
 * then every group's ranking is measured as recall instead of compared exactly. */
static int forced_graph;
static int n_reports;

/* ---- random ---- */
static uint64_t rng_state;
static uint64_t rnd64(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static int rnd_int(int n) /* 0..n-1 */
{
    return (int)(rnd64() % (uint64_t)n);
}
static double rnd_unit(void)
{
    return (double)(rnd64() >> 11) / 9007199254740992.0;
}
static int chance(double p)
{
    return rnd_unit() < p;
}

/* ---- time ---- */
static void fmt_ms(int64_t ms, char out[48])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 48, "%s.%03dZ", buf, (int)(ms % 1000));
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.fff...]Z"; INT64_MIN otherwise. */
static int64_t parse_ms(const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, n = 0;
    int64_t ms = 0;

    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return INT64_MIN;
    s += n;
    if (*s == '.') {
        int digits = 0;
        for (s++; *s >= '0' && *s <= '9'; s++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*s - '0');
        while (digits++ < 3)
            ms *= 10;
    }
    if (strcmp(s, "Z") != 0)
        return INT64_MIN;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static const int64_t T2025 = 1735689600000LL; /* 2025-01-01T00:00:00Z */
static const int64_t T2027 = 1798761600000LL; /* 2027-01-01T00:00:00Z */

static void csv_of_comps(unsigned comps, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < NCOMP; i++)
        if (comps & (1u << i)) {
            size_t len = strlen(out);
            snprintf(out + len, cap - len, "%s%s", len ? "," : "", COMPS[i]);
        }
}

/* ---- data ---- */

static void gen_chunk(struct ochunk *c, const struct oproduct *p, const char *id)
{
    snprintf(c->id, sizeof c->id, "%s", id);
    for (size_t d = 0; d < GROUPS[p->group].dim; d++)
        c->v[d] = (float)(rnd_unit() * 2.0 - 1.0);
    c->conf = rnd_int(6);
    c->comps = 0;
    for (int i = 0; i < NCOMP; i++)
        if (chance(0.22))
            c->comps |= 1u << i;
    c->subject = rnd_int(NSUBJECTS);
    c->source = rnd_int(3);
    c->section = rnd_int(4);
    c->doc = rnd_int(NDOCS);
    c->created = chance(0.1) ? INT64_MIN : T2025 + (int64_t)(rnd_unit() * (double)(T2027 - T2025));
}

static int load_version(struct oproduct *p, struct oversion *v)
{
    size_t dim = GROUPS[p->group].dim;
    int rc = 0;

    if (th_version_create(&srv, p->name, v->name) != 0)
        return -1;
    size_t batch = GROUPS[p->group].big ? 2000 : 100;
    for (size_t start = 0; start < v->n && rc == 0; start += batch) {
        cJSON *arr = cJSON_CreateArray();
        long accepted = -1;
        size_t end = start + batch < v->n ? start + batch : v->n;
        for (size_t i = start; i < end; i++) {
            const struct ochunk *c = &v->chunks[i];
            char comps[64], doc[24], subj[24], at[48], text[128];
            csv_of_comps(c->comps, comps, sizeof comps);
            snprintf(doc, sizeof doc, "doc-%03d", c->doc);
            snprintf(subj, sizeof subj, "patient-%02d", c->subject);
            snprintf(text, sizeof text, "chunk %.63s of %.15s@%.23s", c->id, p->name, v->name);
            if (c->created != INT64_MIN)
                fmt_ms(c->created, at);
            cJSON_AddItemToArray(arr, th_chunk_new(c->id, text, c->v, dim, CONFS[c->conf], comps,
                                                   SOURCES[c->source], doc, SECTIONS[c->section],
                                                   subj, c->created != INT64_MIN ? at : NULL));
        }
        rc = th_chunks_add(&srv, p->name, v->name, arr, &accepted, NULL);
        if (rc == 0)
            CHECK_EQ_INT(accepted, (long)(end - start));
        cJSON_Delete(arr);
    }
    if (rc == 0)
        rc = th_publish(&srv, p->name, v->name, v->published_at);
    v->published_ms = parse_ms(v->published_at);
    return rc;
}

static int gen_products(void)
{
    for (int g = 0; g < ngroups; g++)
        for (int j = 0; j < GROUPS[g].count; j++) {
            struct oproduct *p = &products[GROUPS[g].first + j];
            char id[64];
            p->group = g;
            p->domain = rnd_int(3);
            snprintf(p->name, sizeof p->name, "%s-%c", GROUPS[g].big ? "big" : GROUPS[g].metric,
                     'a' + j);
            /* the first product of each small group has two versions, so retirements happen */
            p->nversions = GROUPS[g].big ? 1 : j == 0 ? 2 : 1 + rnd_int(MAX_VERSIONS);
            if (th_product_create(&srv, p->name, DOMAINS[p->domain], GROUPS[g].dim,
                                  GROUPS[g].metric, "PSY,HIV,SUD,ETH",
                                  "source_system,subject") != 0)
                return -1;
            for (int vi = 0; vi < p->nversions; vi++) {
                struct oversion *v = &p->v[vi];
                snprintf(v->name, sizeof v->name, "2026-0%d", vi + 1);
                v->n = GROUPS[g].big ? (size_t)big_rows : 150 + (size_t)rnd_int(151);
                v->chunks = calloc(v->n, sizeof *v->chunks);
                if (v->chunks == NULL)
                    return -1;
                for (size_t i = 0; i < v->n; i++) {
                    /* later versions reuse about half of the first version's ids with new
                     * content: versions are independent snapshots */
                    if (vi > 0 && i < p->v[0].n && chance(0.5))
                        snprintf(id, sizeof id, "%.63s", p->v[0].chunks[i].id);
                    else
                        snprintf(id, sizeof id, "%.15s-v%d#%zu", p->name, vi + 1, i);
                    gen_chunk(&v->chunks[i], p, id);
                }
                /* ids are unique within a version: drop accidental duplicates */
                for (size_t i = 0; vi > 0 && i < v->n; i++)
                    for (size_t k = 0; k < i; k++)
                        if (strcmp(v->chunks[i].id, v->chunks[k].id) == 0)
                            snprintf(v->chunks[i].id, sizeof v->chunks[i].id, "%.15s-v%d#%zu",
                                     p->name, vi + 1, i);
                if (load_version(p, v) != 0)
                    return -1;
            }
        }
    return 0;
}

/* ---- policy ---- */

static int refresh_policy_version(void)
{
    th_resp r;
    int rc = -1;
    th_request(&srv, "GET", "/v1/policy", srv.admin_key, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200)) {
        int active = 0;
        policy_version = (long)th_num(r.json, "version", -1);
        CHECKF(policy_version >= 0, "GET /v1/policy has no version: %.300s", r.body);
        CHECKF(th_is_sha256(th_str(r.json, "hash"), 0), "policy hash: %.300s", r.body);
        for (int i = 0; i < ngrants; i++)
            active += grants[i].active;
        CHECK_EQ_INT(cJSON_GetArraySize(th_get(r.json, "grants")), active);
        CHECK_EQ_INT(cJSON_GetArraySize(th_get(r.json, "suppressions")), nsupps);
        rc = 0;
    }
    th_resp_release(&r);
    return rc;
}

static int add_grant(int principal, int product, int domain, unsigned purposes, int clearance,
                     unsigned comps)
{
    struct ogrant *g;
    char pur[128] = "", cmp[64], name[16];

    if (ngrants >= MAX_GRANTS)
        return 0;
    g = &grants[ngrants];
    g->principal = principal;
    g->product = product;
    g->domain = domain;
    g->purposes = purposes;
    g->clearance = clearance;
    g->comps = comps;
    for (int i = 0; i < NPURPOSES; i++)
        if (purposes & (1u << i)) {
            size_t len = strlen(pur);
            snprintf(pur + len, sizeof pur - len, "%s%s", len ? "," : "", PURPOSES[i]);
        }
    csv_of_comps(comps, cmp, sizeof cmp);
    snprintf(name, sizeof name, "oc-%d", principal);
    if (th_grant(&srv, name, product >= 0 ? products[product].name : NULL,
                 domain >= 0 ? DOMAINS[domain] : NULL, pur, CONFS[clearance], cmp, g->id) != 0)
        return -1;
    g->active = 1;
    ngrants++;
    return 0;
}

static int add_random_grant(int principal)
{
    unsigned purposes = 0;
    int n = 1 + rnd_int(3);
    unsigned comps = 0;

    for (int i = 0; i < n; i++)
        purposes |= 1u << rnd_int(NGRANTABLE);
    for (int i = 0; i < NCOMP; i++)
        if (chance(0.5))
            comps |= 1u << i;
    if (chance(0.6))
        return add_grant(principal, rnd_int(nproducts), -1, purposes, rnd_int(6), comps);
    return add_grant(principal, -1, rnd_int(3), purposes, rnd_int(6), comps);
}

static int add_random_suppression(void)
{
    struct osupp *s = &supps[nsupps];
    char value[80];
    static const char *const kinds[] = {"subject", "document_id", "chunk_id"};

    if (nsupps >= MAX_SUPP)
        return 0;
    s->product = rnd_int(nproducts);
    s->kind = rnd_int(3);
    const struct oproduct *p = &products[s->product];
    const struct oversion *v = &p->v[rnd_int(p->nversions)];
    const struct ochunk *c = &v->chunks[rnd_int((int)v->n)];
    s->subject = c->subject;
    s->doc = c->doc;
    snprintf(s->chunk_id, sizeof s->chunk_id, "%s", c->id);
    if (s->kind == SUPP_SUBJECT)
        snprintf(value, sizeof value, "patient-%02d", s->subject);
    else if (s->kind == SUPP_DOC)
        snprintf(value, sizeof value, "doc-%03d", s->doc);
    else
        snprintf(value, sizeof value, "%s", s->chunk_id);
    if (th_suppress(&srv, p->name, kinds[s->kind], value) != 0)
        return -1;
    nsupps++;
    return 0;
}

static int revoke_grant(int gi)
{
    th_resp r;
    int rc;
    th_req(&srv, "DELETE", srv.admin_key, NULL, &r, "/v1/grants/%s", grants[gi].id);
    rc = TH_CHECK_STATUS(&r, 200) ? 0 : -1;
    if (rc == 0)
        grants[gi].active = 0;
    th_resp_release(&r);
    return rc;
}

static int setup_policy(void)
{
    for (int p = 0; p < NPRINCIPALS; p++) {
        char name[16];
        snprintf(name, sizeof name, "oc-%d", p);
        keys[p] = th_principal_create(&srv, name, "consumer", "");
        if (keys[p] == NULL)
            return -1;
    }
    /* Principal 0: two grants on one product that must not merge into "V with every
     * compartment": one sees up to V without compartments, the other up to L with all. */
    if (add_grant(0, 0, -1, 1u << 0, 5, 0) || add_grant(0, 0, -1, 1u << 0, 1, 0xF))
        return -1;
    /* Principal 1: the same split across a domain grant and a product grant. */
    if (add_grant(1, -1, products[2].domain, 1u << 0 | 1u << 1, 2, 1u << 0) ||
        add_grant(1, 2, -1, 1u << 0, 4, 1u << 1))
        return -1;
    if (nproducts > GROUPS[NGROUPS - 1].first) {
        /* large allow-sets on the big product, so that its graph path is taken */
        int big = GROUPS[NGROUPS - 1].first;
        if (add_grant(2, big, -1, 1u << 0, 5, 0xF) ||
            add_grant(3, -1, products[big].domain, 1u << 3, 3, 1u << 0))
            return -1;
    }
    for (int p = 0; p < NPRINCIPALS; p++) {
        int n = p < 2 ? rnd_int(2) : 1 + rnd_int(3);
        for (int i = 0; i < n; i++)
            if (add_random_grant(p) != 0)
                return -1;
    }
    for (int i = 0; i < 5; i++)
        if (add_random_suppression() != 0)
            return -1;
    return refresh_policy_version();
}

/* ---- the oracle ---- */

struct oquery {
    int principal, purpose, group;
    int nprod;
    int prod[PER_GROUP];
    int rule[PER_GROUP]; /* 0 latest, 1 pinned, 2 as_of */
    int pin[PER_GROUP];  /* version index for pinned / as_of */
    size_t k;
    float v[MAX_DIM];
    int f_subject;        /* -1: none */
    unsigned f_sources;   /* 0: none */
    unsigned f_sections;  /* 0: none */
    int64_t f_from, f_to; /* INT64_MIN: none */
    unsigned include;     /* 0: default (all); else bits text,labels,provenance,metadata */
    int explain;
    int reason;
};

static int grant_covers(const struct ogrant *g, int principal, int product, int purpose)
{
    return g->active && g->principal == principal &&
           (g->product == product || (g->product < 0 && g->domain == products[product].domain)) &&
           (g->purposes & (1u << purpose));
}

static int entitled(int principal, int product, int purpose)
{
    for (int i = 0; i < ngrants; i++)
        if (grant_covers(&grants[i], principal, product, purpose))
            return 1;
    return 0;
}

/* Rules 1-4: the grants and suppressions (no request filter). */
static int policy_allows(int principal, int purpose, int product, const struct ochunk *c)
{
    int ok = 0;
    for (int i = 0; i < ngrants && !ok; i++) {
        const struct ogrant *g = &grants[i];
        ok = grant_covers(g, principal, product, purpose) && c->conf <= g->clearance &&
             (c->comps & ~g->comps) == 0;
    }
    if (!ok)
        return 0;
    for (int i = 0; i < nsupps; i++) {
        const struct osupp *s = &supps[i];
        if (s->product != product)
            continue;
        if ((s->kind == SUPP_SUBJECT && s->subject == c->subject) ||
            (s->kind == SUPP_DOC && s->doc == c->doc) ||
            (s->kind == SUPP_CHUNK && strcmp(s->chunk_id, c->id) == 0))
            return 0;
    }
    return 1;
}

/* Rule 5: the request's own filter. */
static int filter_matches(const struct oquery *q, const struct ochunk *c)
{
    if (q->f_subject >= 0 && c->subject != q->f_subject)
        return 0;
    if (q->f_sources && !(q->f_sources & (1u << c->source)))
        return 0;
    if (q->f_sections && !(q->f_sections & (1u << c->section)))
        return 0;
    if ((q->f_from != INT64_MIN || q->f_to != INT64_MIN) && c->created == INT64_MIN)
        return 0;
    if (q->f_from != INT64_MIN && c->created < q->f_from)
        return 0;
    if (q->f_to != INT64_MIN && c->created >= q->f_to)
        return 0;
    return 1;
}

/* The version a product rule resolves to (index), or -1 if none. */
static int resolve(const struct oquery *q, int i)
{
    const struct oproduct *p = &products[q->prod[i]];
    if (q->rule[i] == 1)
        return q->pin[i];
    if (q->rule[i] == 2) {
        /* latest published at T = published_at of version pin[i] (no retirements involved) */
        int best = -1;
        int64_t t = p->v[q->pin[i]].published_ms;
        for (int vi = 0; vi < p->nversions; vi++)
            if (p->v[vi].published_ms <= t &&
                (best < 0 || p->v[vi].published_ms >= p->v[best].published_ms))
                best = vi;
        return best;
    }
    for (int vi = p->nversions - 1; vi >= 0; vi--)
        if (!p->v[vi].retired)
            return vi;
    return -1;
}

struct expect {
    int product, version;
    const struct ochunk *c;
    double score;
};

static int cmp_metric; /* 1 if ascending (l2) */
static int cmp_expect(const void *a, const void *b)
{
    const struct expect *x = a, *y = b;
    if (x->score != y->score)
        return ((x->score < y->score) == cmp_metric) ? -1 : 1;
    return 0;
}

static void gen_query(struct oquery *q, int allow_retired_pins)
{
    memset(q, 0, sizeof *q);
    q->principal = rnd_int(NPRINCIPALS);
    /* mostly a purpose the principal holds somewhere, sometimes any (incl. never-granted) */
    q->purpose = rnd_int(NPURPOSES);
    if (chance(0.8)) {
        unsigned held = 0;
        for (int i = 0; i < ngrants; i++)
            if (grants[i].active && grants[i].principal == q->principal)
                held |= grants[i].purposes;
        if (held) {
            do
                q->purpose = rnd_int(NGRANTABLE);
            while (!(held & (1u << q->purpose)));
        }
    }
    q->group = rnd_int(ngroups);
    if (chance(0.7)) {
        /* mostly a group where the principal may see something for this purpose */
        int ok_groups[NGROUPS], nok = 0;
        for (int gi = 0; gi < ngroups; gi++)
            for (int j = 0; j < GROUPS[gi].count; j++)
                if (entitled(q->principal, GROUPS[gi].first + j, q->purpose)) {
                    ok_groups[nok++] = gi;
                    break;
                }
        if (nok > 0)
            q->group = ok_groups[rnd_int(nok)];
    }
    /* products: mostly ones the principal is entitled to */
    const struct group *grp = &GROUPS[q->group];
    int cand[PER_GROUP], ncand = 0;
    for (int j = 0; j < grp->count; j++) {
        int p = grp->first + j;
        if (entitled(q->principal, p, q->purpose))
            cand[ncand++] = p;
    }
    if (ncand > 0 && chance(0.75)) {
        q->nprod = 1 + rnd_int(ncand);
        int start = rnd_int(ncand);
        for (int i = 0; i < q->nprod; i++)
            q->prod[i] = cand[(start + i) % ncand];
    } else {
        q->nprod = 1 + rnd_int(grp->count);
        int start = rnd_int(grp->count);
        for (int i = 0; i < q->nprod; i++)
            q->prod[i] = grp->first + (start + i) % grp->count;
    }
    for (int i = 0; i < q->nprod; i++) {
        const struct oproduct *p = &products[q->prod[i]];
        int any_retired = 0, times_ok = 1;
        for (int vi = 0; vi < p->nversions; vi++) {
            any_retired |= p->v[vi].retired;
            times_ok &= p->v[vi].published_ms != INT64_MIN;
            if (vi > 0)
                times_ok &= p->v[vi].published_ms > p->v[vi - 1].published_ms;
        }
        double u = rnd_unit();
        q->rule[i] = u < 0.55 ? 0 : u < 0.88 ? 1 : 2;
        q->pin[i] = rnd_int(p->nversions);
        if (q->rule[i] == 2 && (any_retired || !times_ok))
            q->rule[i] = 1;
        if (q->rule[i] == 1 && p->v[q->pin[i]].retired && !allow_retired_pins)
            q->rule[i] = 0;
    }
    q->k = 1 + (size_t)rnd_int(50);
    for (size_t d = 0; d < GROUPS[q->group].dim; d++)
        q->v[d] = (float)(rnd_unit() * 2.0 - 1.0);
    q->f_subject = chance(0.2) ? rnd_int(NSUBJECTS) : -1;
    if (chance(0.25))
        q->f_sources = 1u + (unsigned)rnd_int(7);
    if (chance(0.25))
        q->f_sections = 1u + (unsigned)rnd_int(15);
    q->f_from = q->f_to = INT64_MIN;
    if (chance(0.25)) {
        /* sometimes exactly a chunk's timestamp, to probe inclusive/exclusive bounds */
        const struct oproduct *p = &products[q->prod[0]];
        const struct oversion *v = &p->v[p->nversions - 1];
        int64_t t = v->chunks[rnd_int((int)v->n)].created;
        if (t == INT64_MIN || chance(0.4))
            t = T2025 + (int64_t)(rnd_unit() * (double)(T2027 - T2025));
        if (chance(0.5))
            q->f_from = t;
        else
            q->f_to = t;
        if (chance(0.4)) {
            int64_t t2 = T2025 + (int64_t)(rnd_unit() * (double)(T2027 - T2025));
            if (q->f_from != INT64_MIN)
                q->f_to = t2;
            else
                q->f_from = t2;
            /* an inverted range is a 400 (invalid_value), not an empty answer: keep from < to */
            if (q->f_from > q->f_to) {
                int64_t tmp = q->f_from;
                q->f_from = q->f_to;
                q->f_to = tmp;
            }
            if (q->f_from == q->f_to)
                q->f_to++;
        }
    }
    q->include = chance(0.3) ? 1u + (unsigned)rnd_int(15) : 0;
    q->explain = chance(0.2);
    q->reason = strcmp(PURPOSES[q->purpose], "ETREAT") == 0 || chance(0.05);
}

static cJSON *query_json(const struct oquery *q)
{
    static const char *const inc[4] = {"text", "labels", "provenance", "metadata"};
    cJSON *b = cJSON_CreateObject();
    cJSON *prods = cJSON_CreateArray();
    char buf[48];

    cJSON_AddItemToObject(b, "vector", th_vec_array(q->v, GROUPS[q->group].dim));
    cJSON_AddNumberToObject(b, "k", (double)q->k);
    cJSON_AddStringToObject(b, "purpose", PURPOSES[q->purpose]);
    /* Steward requires a reason for the break-glass purpose ETREAT (400 reason_required). */
    if (q->reason)
        cJSON_AddStringToObject(b, "reason", "oracle test: emergency access");
    for (int i = 0; i < q->nprod; i++) {
        const struct oproduct *p = &products[q->prod[i]];
        if (q->rule[i] == 0) {
            cJSON_AddItemToArray(prods, cJSON_CreateString(p->name));
        } else if (q->rule[i] == 1) {
            snprintf(buf, sizeof buf, "%s@%s", p->name, p->v[q->pin[i]].name);
            cJSON_AddItemToArray(prods, cJSON_CreateString(buf));
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "product", p->name);
            cJSON_AddStringToObject(o, "as_of", p->v[q->pin[i]].published_at);
            cJSON_AddItemToArray(prods, o);
        }
    }
    cJSON_AddItemToObject(b, "products", prods);
    if (q->f_subject >= 0 || q->f_sources || q->f_sections || q->f_from != INT64_MIN ||
        q->f_to != INT64_MIN) {
        cJSON *f = cJSON_CreateObject();
        if (q->f_subject >= 0) {
            snprintf(buf, sizeof buf, "patient-%02d", q->f_subject);
            cJSON_AddStringToObject(f, "subject", buf);
        }
        if (q->f_sources) {
            cJSON *a = cJSON_AddArrayToObject(f, "source_system");
            for (int i = 0; i < 3; i++)
                if (q->f_sources & (1u << i))
                    cJSON_AddItemToArray(a, cJSON_CreateString(SOURCES[i]));
        }
        if (q->f_sections) {
            cJSON *a = cJSON_AddArrayToObject(f, "section");
            for (int i = 0; i < 4; i++)
                if (q->f_sections & (1u << i))
                    cJSON_AddItemToArray(a, cJSON_CreateString(SECTIONS[i]));
        }
        if (q->f_from != INT64_MIN) {
            fmt_ms(q->f_from, buf);
            cJSON_AddStringToObject(f, "created_from", buf);
        }
        if (q->f_to != INT64_MIN) {
            fmt_ms(q->f_to, buf);
            cJSON_AddStringToObject(f, "created_to", buf);
        }
        cJSON_AddItemToObject(b, "filter", f);
    }
    if (q->include) {
        cJSON *a = cJSON_AddArrayToObject(b, "include");
        for (int i = 0; i < 4; i++)
            if (q->include & (1u << i))
                cJSON_AddItemToArray(a, cJSON_CreateString(inc[i]));
    }
    if (q->explain)
        cJSON_AddTrueToObject(b, "explain");
    return b;
}

/* Records one problem with a query; prints the first few in full. */
static void report(int *bad, const char *body, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(int *bad, const char *body, const char *fmt, ...)
{
    va_list ap;
    if (*bad == 0 && n_reports < MAX_REPORTS)
        fprintf(stderr, "\n-- oracle mismatch, request: %s\n", body);
    if (n_reports < MAX_REPORTS) {
        fprintf(stderr, "   ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    (*bad)++;
}

/* Guards everything run_query touches after its HTTP exchange (counters, reports) and the
 * generator: several client threads run queries concurrently in the second phase. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* The receipt of a 200 answer: principal, purpose, policy version, k and the returned chunks
 * in rank order (docs/api.md, Governance). Takes the lock for its reports. */
static void check_receipt(th_server *client, const struct oquery *q, const th_resp *answer,
                          const char *text, int *bad)
{
    th_resp a;
    const char *qid = th_str(answer->json, "query_id");
    char principal[16];

    snprintf(principal, sizeof principal, "oc-%d", q->principal);
    th_req(client, "GET", srv.admin_key, NULL, &a, "/v1/audit/queries/%s", qid ? qid : "none");
    pthread_mutex_lock(&mu);
    n_receipts++;
    if (a.status != 200) {
        report(bad, text, "GET /v1/audit/queries/%s: HTTP %ld %.200s", qid ? qid : "(no id)",
               a.status, a.body);
        goto out;
    }
    const char *rp = th_str(a.json, "principal"), *pu = th_str(a.json, "purpose");
    if (!rp || strcmp(rp, principal) || !pu || strcmp(pu, PURPOSES[q->purpose]))
        report(bad, text, "receipt names principal %s purpose %s", rp ? rp : "?", pu ? pu : "?");
    if ((long)th_num(a.json, "policy_version", -1) !=
        (long)th_num(answer->json, "policy_version", -2))
        report(bad, text, "receipt policy_version differs from the answer's");
    if ((size_t)th_num(a.json, "k", -1) != q->k)
        report(bad, text, "receipt k %.0f, query k %zu", th_num(a.json, "k", -1), q->k);
    const cJSON *got = th_get(a.json, "results"), *want = th_get(answer->json, "results");
    if (cJSON_GetArraySize(got) != cJSON_GetArraySize(want)) {
        report(bad, text, "receipt lists %d chunks, the answer %d", cJSON_GetArraySize(got),
               cJSON_GetArraySize(want));
        goto out;
    }
    for (int i = 0; i < cJSON_GetArraySize(want); i++) {
        const cJSON *g = cJSON_GetArrayItem(got, i), *w = cJSON_GetArrayItem(want, i);
        const char *gi = th_str(g, "chunk_id"), *wi = th_str(w, "chunk_id");
        const char *gp = th_str(g, "product"), *wp = th_str(w, "product");
        if (!gi || !wi || strcmp(gi, wi) || !gp || !wp || strcmp(gp, wp)) {
            report(bad, text, "receipt rank %d is %s/%s, the answer's %s/%s", i + 1, gp ? gp : "?",
                   gi ? gi : "?", wp ? wp : "?", wi ? wi : "?");
            break;
        }
    }
out:
    pthread_mutex_unlock(&mu);
    th_resp_release(&a);
}

static void run_query(th_server *client, const struct oquery *q)
{
    const struct group *g = &GROUPS[q->group];
    cJSON *body = query_json(q);
    char *text = cJSON_PrintUnformatted(body);
    th_resp r;
    int bad = 0, leaks = 0;
    int resolved[PER_GROUP];
    int uncovered = -1, retired_pin = 0;
    struct expect *exp = NULL;
    size_t nexp = 0, cap = 0;
    size_t grant_visible[PER_GROUP] = {0}, visible[PER_GROUP] = {0};

    /* expectation */
    for (int i = 0; i < q->nprod; i++) {
        resolved[i] = resolve(q, i);
        if (!entitled(q->principal, q->prod[i], q->purpose) && uncovered < 0)
            uncovered = i;
        if (resolved[i] >= 0 && products[q->prod[i]].v[resolved[i]].retired)
            retired_pin = 1;
    }
    th_request(client, "POST", "/v1/query", keys[q->principal], text, strlen(text), &r);
    pthread_mutex_lock(&mu);
    n_queries++;

    if (uncovered >= 0 || retired_pin) {
        long want = uncovered >= 0 ? 403 : 410;
        const char *code = th_str(r.json, "error.code");
        const char *msg = th_str(r.json, "error.message");
        if (uncovered >= 0 && retired_pin && (r.status == 403 || r.status == 410))
            want = r.status; /* either refusal is right when both apply */
        if (r.status != want) {
            report(&bad, text, "expected HTTP %ld, got %ld: %.300s", want, r.status, r.body);
            if (r.status == 200)
                leaks += cJSON_GetArraySize(th_get(r.json, "results"));
        } else if (want == 403) {
            int named = 0;
            for (int i = 0; i < q->nprod; i++)
                if (!entitled(q->principal, q->prod[i], q->purpose) && msg &&
                    strstr(msg, products[q->prod[i]].name))
                    named = 1;
            if (code == NULL || strcmp(code, "not_entitled") != 0 || !named)
                report(&bad, text, "403 should be not_entitled naming the product: %.300s", r.body);
            n_403++;
        } else {
            n_410++;
        }
        goto done;
    }

    for (int i = 0; i < q->nprod; i++) {
        const struct oversion *v = &products[q->prod[i]].v[resolved[i]];
        for (size_t j = 0; j < v->n; j++) {
            const struct ochunk *c = &v->chunks[j];
            if (!policy_allows(q->principal, q->purpose, q->prod[i], c))
                continue;
            grant_visible[i]++;
            if (!filter_matches(q, c))
                continue;
            visible[i]++;
            if (nexp == cap) {
                cap = cap ? cap * 2 : 256;
                exp = realloc(exp, cap * sizeof *exp);
            }
            exp[nexp].product = q->prod[i];
            exp[nexp].version = resolved[i];
            exp[nexp].c = c;
            exp[nexp].score = th_score(g->metric, q->v, c->v, g->dim);
            nexp++;
        }
    }
    cmp_metric = strcmp(g->metric, "l2") == 0;
    if (nexp > 1)
        qsort(exp, nexp, sizeof *exp, cmp_expect);
    /* The big version may be searched through its HNSW graph: the ranking may then be
     * approximate (recall is measured instead), everything else is checked as strictly. */
    int approx = g->big || forced_graph;

    if (r.status != 200) {
        report(&bad, text, "expected HTTP 200, got %ld: %.300s", r.status, r.body);
        goto done;
    }
    n_ok200++;
    size_t want_n = q->k < nexp ? q->k : nexp;
    if (want_n == 0)
        n_empty++;
    if (want_n == q->k)
        n_full++;
    const cJSON *res = th_get(r.json, "results");
    if (!cJSON_IsTrue(th_get(r.json, "complete")))
        report(&bad, text, "complete is not true");
    if ((long)th_num(r.json, "policy_version", -1) != policy_version)
        report(&bad, text, "policy_version %.0f, expected %ld",
               th_num(r.json, "policy_version", -1), policy_version);
    if (!cJSON_IsArray(res)) {
        report(&bad, text, "no results array: %.300s", r.body);
        goto done;
    }
    /* versions: exactly the resolved ones */
    {
        const cJSON *vs = th_get(r.json, "versions");
        int nv = cJSON_GetArraySize(vs), matched = 0;
        for (int i = 0; i < q->nprod; i++) {
            const cJSON *it;
            cJSON_ArrayForEach(it, vs)
            {
                const char *pn = th_str(it, "product"), *vn = th_str(it, "version");
                if (pn && vn && !strcmp(pn, products[q->prod[i]].name) &&
                    !strcmp(vn, products[q->prod[i]].v[resolved[i]].name))
                    matched++;
            }
        }
        if (nv != q->nprod || matched != q->nprod) {
            char *vtext = vs ? cJSON_PrintUnformatted(vs) : NULL;
            report(&bad, text, "versions %s do not match the resolved versions",
                   vtext ? vtext : "(missing)");
            cJSON_free(vtext);
        }
    }
    if ((size_t)cJSON_GetArraySize(res) != want_n)
        report(&bad, text, "%d results, expected min(k=%zu, visible=%zu) = %zu",
               cJSON_GetArraySize(res), q->k, nexp, want_n);

    size_t rank = 0, hits_in_topk = 0;
    double prev_score = 0;
    const cJSON *it;
    char *seen = calloc(nexp + 1, 1);
    cJSON_ArrayForEach(it, res)
    {
        const char *pn = th_str(it, "product"), *vn = th_str(it, "version");
        const char *id = th_str(it, "chunk_id");
        double score = th_num(it, "score", NAN);
        size_t e;
        for (e = 0; e < nexp; e++) {
            const struct oproduct *p = &products[exp[e].product];
            if (pn && vn && id && !strcmp(pn, p->name) && !strcmp(vn, p->v[exp[e].version].name) &&
                !strcmp(id, exp[e].c->id))
                break;
        }
        if (e == nexp) {
            leaks++;
            report(&bad, text, "LEAK: rank %zu %s/%s/%s is not visible to this request", rank + 1,
                   pn ? pn : "?", vn ? vn : "?", id ? id : "?");
            rank++;
            continue;
        }
        if (seen[e])
            report(&bad, text, "rank %zu: %s returned twice", rank + 1, id);
        seen[e] = 1;
        if ((long)th_num(it, "rank", -1) != (long)(rank + 1))
            report(&bad, text, "rank field %.0f at position %zu", th_num(it, "rank", -1), rank + 1);
        if (!(fabs(score - exp[e].score) <= 1e-4))
            report(&bad, text, "rank %zu %s: score %.7f, brute force %.7f", rank + 1, id, score,
                   exp[e].score);
        if (!approx && rank < nexp && !(fabs(exp[e].score - exp[rank].score) <= 1e-5))
            report(&bad, text,
                   "rank %zu: got %s (score %.7f) but expected %s (score %.7f) at this rank",
                   rank + 1, id, exp[e].score, exp[rank].c->id, exp[rank].score);
        /* fields carried, when carried, are this chunk's */
        const struct ochunk *c = exp[e].c;
        const char *t = th_str(it, "text");
        char want_text[128];
        snprintf(want_text, sizeof want_text, "chunk %.63s of %.15s@%.23s", c->id,
                 products[exp[e].product].name, products[exp[e].product].v[exp[e].version].name);
        if (t && strcmp(t, want_text) != 0)
            report(&bad, text, "rank %zu %s: text '%s', expected '%s'", rank + 1, id, t, want_text);
        const char *conf = th_str(it, "labels.confidentiality");
        if (conf && strcmp(conf, CONFS[c->conf]) != 0)
            report(&bad, text, "rank %zu %s: confidentiality %s, expected %s", rank + 1, id, conf,
                   CONFS[c->conf]);
        const char *subj = th_str(it, "provenance.subject");
        char want_subj[24];
        snprintf(want_subj, sizeof want_subj, "patient-%02d", c->subject);
        if (subj && strcmp(subj, want_subj) != 0)
            report(&bad, text, "rank %zu %s: subject %s, expected %s", rank + 1, id, subj,
                   want_subj);
        if (q->include) {
            static const char *const inc[4] = {"text", "labels", "provenance", "metadata"};
            for (int b = 0; b < 4; b++)
                if (!(q->include & (1u << b)) && th_get(it, inc[b]) != NULL)
                    report(&bad, text, "rank %zu: '%s' returned though not included", rank + 1,
                           inc[b]);
        }
        if (approx && rank > 0 && th_better(g->metric, exp[e].score, prev_score) &&
            fabs(exp[e].score - prev_score) > 1e-5)
            report(&bad, text, "rank %zu %s (%.7f) ranks below a worse result (%.7f)", rank + 1, id,
                   exp[e].score, prev_score);
        if (approx && want_n > 0 && !th_better(g->metric, exp[want_n - 1].score, exp[e].score))
            hits_in_topk++;
        else if (approx && want_n > 0 && fabs(exp[e].score - exp[want_n - 1].score) <= 1e-5)
            hits_in_topk++;
        prev_score = exp[e].score;
        rank++;
    }
    free(seen);
    if (approx) {
        n_approx[q->group]++;
        recall_sum[q->group] += want_n ? (double)hits_in_topk / (double)want_n : 1.0;
    }

    /* explain: the plan never counts chunks the caller cannot see */
    if (q->explain) {
        const cJSON *plan = th_get(r.json, "plan");
        if (!cJSON_IsArray(plan))
            report(&bad, text, "explain:true but no plan array");
        cJSON_ArrayForEach(it, plan)
        {
            const char *pn = th_str(it, "product");
            const char *strategy = th_str(it, "strategy");
            double allowed = th_num(it, "allowed", -1);
            if (approx && strategy && strncmp(strategy, "hnsw", 4) == 0)
                n_graph[q->group]++;
            for (int i = 0; i < q->nprod; i++)
                if (pn && !strcmp(pn, products[q->prod[i]].name) &&
                    (allowed < (double)visible[i] || allowed > (double)grant_visible[i]))
                    report(&bad, text,
                           "plan for %s: allowed %.0f, but %zu chunks are visible (%zu before "
                           "the request's filter)",
                           pn, allowed, visible[i], grant_visible[i]);
        }
    }

done:
    n_leaks += leaks;
    /* every 16th answer: its audit receipt exists, as an admin reads it, and records it */
    int want_receipt = r.status == 200 && (n_ok200 % 16) == 1;
    pthread_mutex_unlock(&mu);
    if (want_receipt)
        check_receipt(client, q, &r, text, &bad);
    if (bad) {
        pthread_mutex_lock(&mu);
        n_mismatches++;
        n_reports++;
        pthread_mutex_unlock(&mu);
    }
    free(exp);
    cJSON_free(text);
    cJSON_Delete(body);
    th_resp_release(&r);
}

struct worker {
    th_server client; /* a copy of srv with its own curl handle */
    pthread_t tid;
};
static long phase_left;
static int phase_allow_retired;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct oquery q;

    for (;;) {
        pthread_mutex_lock(&mu);
        if (phase_left <= 0) {
            pthread_mutex_unlock(&mu);
            break;
        }
        phase_left--;
        gen_query(&q, phase_allow_retired);
        pthread_mutex_unlock(&mu);
        run_query(&w->client, &q);
    }
    return NULL;
}

/* n random queries from nthreads concurrent clients (1: this thread, srv's handle). */
static void run_phase(long n, int allow_retired_pins, int nthreads)
{
    struct worker w[4];
    int started = 0;

    phase_left = n;
    phase_allow_retired = allow_retired_pins;
    if (nthreads <= 1) {
        w[0].client = srv;
        worker_main(&w[0]);
        return;
    }
    for (int i = 0; i < nthreads && i < 4; i++) {
        w[i].client = srv;
        w[i].client.curl = curl_easy_init();
        if (w[i].client.curl == NULL || pthread_create(&w[i].tid, NULL, worker_main, &w[i])) {
            curl_easy_cleanup(w[i].client.curl);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(w[i].tid, NULL);
        curl_easy_cleanup(w[i].client.curl);
    }
    CHECKF(started == nthreads, "started %d of %d client threads", started, nthreads);
    if (phase_left > 0) /* no thread could start: finish here */
        worker_main(&w[0]);
}

/* Policy and catalog changes between the two phases. */
static int change_things(void)
{
    int revoked = 0;
    /* revoke a random active grant (not principal 0's pair) */
    for (int tries = 0; tries < 20 && !revoked; tries++) {
        int gi = 4 + rnd_int(ngrants - 4 > 0 ? ngrants - 4 : 1);
        if (gi < ngrants && grants[gi].active) {
            if (revoke_grant(gi) != 0)
                return -1;
            revoked = 1;
        }
    }
    for (int i = 0; i < 3; i++)
        if (add_random_suppression() != 0)
            return -1;
    if (add_random_grant(rnd_int(NPRINCIPALS)) != 0)
        return -1;
    /* retire the older version of one two-version product and the newer of another */
    int done_old = 0, done_new = 0;
    for (int p = 0; p < nproducts; p++) {
        struct oproduct *pr = &products[p];
        if (pr->nversions < 2)
            continue;
        if (!done_old) {
            if (th_retire(&srv, pr->name, pr->v[0].name) != 0)
                return -1;
            pr->v[0].retired = 1;
            done_old = 1;
        } else if (!done_new) {
            if (th_retire(&srv, pr->name, pr->v[1].name) != 0)
                return -1;
            pr->v[1].retired = 1;
            done_new = 1;
        }
    }
    return refresh_policy_version();
}

int main(int argc, char **argv)
{
    unsigned long long seed = th_seed_from_env("STW_ORACLE_SEED");
    const char *nq_env = getenv("STW_ORACLE_QUERIES");
    long nq = nq_env ? strtol(nq_env, NULL, 10) : 5000;
    struct timespec t0, t1;

    if (nq < 2)
        nq = 2;
    forced_graph = getenv("STEWARD_STRATEGY") && !strcmp(getenv("STEWARD_STRATEGY"), "hnsw");
    if (getenv("STW_ORACLE_BIG_ROWS") != NULL)
        big_rows = strtol(getenv("STW_ORACLE_BIG_ROWS"), NULL, 10);
    if (big_rows <= 0) {
        ngroups = NGROUPS - 1;
        nproducts = GROUPS[NGROUPS - 1].first;
    }
    printf("oracle: seed=%llu (replay with STW_ORACLE_SEED=%llu)\n", seed, seed);
    fflush(stdout);
    rng_state = seed;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (th_start(&srv, th_steward_bin(argc, argv)) != 0)
        goto out;
    if (gen_products() != 0 || setup_policy() != 0) {
        CHECK_FAIL("setup failed (seed %llu)", seed);
        goto out;
    }
    run_phase(nq / 2, 0, 1);
    if (change_things() != 0) {
        CHECK_FAIL("policy change failed (seed %llu)", seed);
        goto out;
    }
    /* The second half runs on a restarted server (everything reloaded from the data folder),
     * from three concurrent clients. */
    if (th_restart(&srv) != 0) {
        CHECK_FAIL("restart failed (seed %llu)", seed);
        goto out;
    }
    run_phase(nq - nq / 2, 1, 3);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("oracle: queries=%ld leaks=%ld mismatches=%ld (200: %ld, of which empty %ld and "
           "k-full %ld; 403: %ld; 410: %ld; receipts checked: %ld) in %.1f s\n",
           n_queries, n_leaks, n_mismatches, n_ok200, n_empty, n_full, n_403, n_410, n_receipts,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    for (int g = 0; g < ngroups; g++) {
        double recall = n_approx[g] ? recall_sum[g] / (double)n_approx[g] : 1.0;
        if (n_approx[g] == 0)
            continue;
        printf("oracle: group %s/d=%zu%s: %ld answers ranked approximately allowed, mean "
               "recall@k %.4f, %ld explained plans took the graph\n",
               GROUPS[g].metric, GROUPS[g].dim, GROUPS[g].big ? " (big product)" : "", n_approx[g],
               recall, n_graph[g]);
        CHECKF(recall >= 0.9, "mean recall@k of the %s group is %.4f (seed %llu)", GROUPS[g].metric,
               recall, seed);
    }
    CHECKF(n_leaks == 0, "%ld chunks leaked (seed %llu)", n_leaks, seed);
    CHECKF(n_mismatches == 0, "%ld of %ld queries mismatched the oracle (seed %llu)", n_mismatches,
           n_queries, seed);
    CHECKF(n_ok200 > nq / 4 && n_403 > 0, "query mix is degenerate: %ld 200s, %ld 403s", n_ok200,
           n_403);
out:
    th_stop(&srv);
    for (int p = 0; p < NPRODUCTS; p++)
        for (int v = 0; v < MAX_VERSIONS; v++)
            free(products[p].v[v].chunks);
    for (int p = 0; p < NPRINCIPALS; p++)
        free(keys[p]);
    return check_summary("oracle");
}
