/* search.c - loaded versions (vset), allow-set bitmaps, exact top-k over allowed rows.
 *
 * Invariants: a vset never changes after load; the allow-set is computed from the server's
 * policy only (grants, suppressions) and then narrowed by the request's filter, so a filter can
 * never widen what a caller sees; every row that reaches a result was tested against the
 * allow-set bitmap. The scan is exact, so results are complete by construction.
 * This file is compiled with -O3 -march=native (CMake) for the distance kernels. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


#include "catalog.h"
#include "distance.h"
#include "faiss_bridge.h"
#include "limits.h"
#include "search.h"
#include "store.h"
#include "util.h"


/* string -> id map (ids from 1; 0 = absent), open addressing */
struct intern {
    char **strs; /* strs[id - 1] */
    size_t n, cap;
    uint32_t *slots; /* id or 0 */
    size_t nslots;   /* power of two */
};

/* rows grouped by an intern id (CSR): rows of id i are rows[off[i] .. off[i+1]) */
struct posting {
    uint32_t *off;  /* nids + 2 */
    uint32_t *rows; /* n */
};

/* Recent allow-sets of one version. A version never changes, so the same access (grants,
 * suppressions, filter: the key spells out every field of each, length-prefixed so that no
 * two accesses share a key) always yields the same set: a repeated access copies its bitmap
 * instead of recomputing it (the row filters cost a pass over every allowed row). */
#define ACACHE_SLOTS   16
#define ACACHE_KEY_MAX 8192 /* longer keys (many suppressions) are not cached */

struct aslot {
    char *key;
    size_t keylen;
    uint64_t *bits;
    uint64_t *pbits; /* the same set in record (label) order, once a scan has needed it */
    size_t count;
    uint64_t used; /* clock of the last hit, for eviction */
};

struct acache {
    pthread_mutex_t mu;
    struct aslot slot[ACACHE_SLOTS]; /* guarded by mu */
    uint64_t clock;                  /* guarded by mu */
};

struct vset {
    int64_t version_id;
    struct acache *allowed; /* mutable though the vset is shared read-only */
    char product[STW_NAME_MAX + 1];
    char version[STW_NAME_MAX + 1];
    size_t n, dim;
    int metric;
    float *vec;                 /* n * dim, normalised for cosine; owned unless ix != NULL */
    size_t vbytes;              /* vec's allocation when owned (n may shrink on a failed load) */
    fx_index *ix;               /* HNSW graph (owns the vectors then), or NULL */
    /* 8-bit codes for the quantised scan (quant_scan), built at load, one record of qstride
     * bytes per row (a multiple of 64, so a row's record is whole cache lines): dim codes in
     * -127..127, then struct fx_qtail (scale: the row minus qmean is scale * codes; sum of the
     * codes; the squared norm of the row minus qmean, the l2 key). In one record, not side arrays, because a scan
     * visits scattered rows and each side array would be one more cache miss per row. NULL
     * if memory was short: the exact scan then. */
    uint8_t *qrows;
    size_t qstride, qbytes;
    fx_walk *walk; /* the graph walk's blocks (faiss_bridge.h), or NULL */
    /* 1-bit codes for the first pass of large scans (quant_scan), in the same label order: per
     * row the signs of the centred row as (dim + 63) / 64 words, then struct bin_tail, in
     * bstride bytes (a multiple of 64: one cache line a row at d <= 384). NULL with qrows. */
    uint8_t *brows;
    size_t bstride, bbytes;
    /* the 1-bit estimate's error, measured at load (bin_calibrate); 0 when it could not be
     * measured (then no 1-bit pass) */
    float bsigma;
    float *qmean; /* dim: the rows' mean, subtracted before quantising */
    /* The records are in label order, not row order: record p holds row qperm[p], and row r
     * is record qpos[r], the rows sorted by (confidentiality, compartments, row). An
     * allow-set made by labels (a clearance, compartments) is then a few runs of adjacent
     * records that the scan reads in order, instead of rows scattered over the version. */
    uint32_t *qperm, *qpos;
    /* k-means cells (CATALOG_CELLS_FILE; ncells 0 without them): the records are then in
     * (labels, cell, row) order, so the allowed rows of one cell are a few runs of adjacent
     * records, one run per label group: coff[j * ngroups + g] is the first record of
     * cell j in group g (a group: the records of one (confidentiality, compartments)). The
     * bounds of a cell are measured here, at load, from its rows: cmean (its rows' mean, less
     * qmean, in float) and crad (the largest |x - mean| over its rows, rounded up), so no
     * assignment, good or bad, can make them wrong (see cell_scan). */
    size_t ncells, ngroups;
    uint32_t *cell;  /* n: row -> cell */
    float *cmean;    /* ncells * dim */
    float *crad;     /* ncells */
    uint32_t *coff;  /* (ncells + 1) * ngroups: a cell's runs start on one cache line */
    /* the means as 8-bit codes for the bounds' pass (a quarter of the bytes: 0.75 of 3 MB at
     * 2,000 cells x 384): cstride bytes a cell (dim codes, as a row's record), their scale,
     * sum, |mean|_1 (the 8-bit error bound) and |mean|^2 (l2) */
    int8_t *ccodes;
    size_t cstride;
    float *cscale, *cl1, *csq;
    int32_t *csum;
    /* the share of the rows the cell scan read for rows of the version taken as queries, all
     * rows allowed (cells_calibrate); the planner uses the cells only where it is small */
    float cells_share;
    /* for the 8-bit key's error bounds: the largest record scale, |x'|_1 and |x'| */
    float qscale_max, ql1_max, qnorm_max;
    uint8_t *conf;              /* n */
    uint64_t *comp;             /* n: bit i = contract compartment i */
    int64_t *created;           /* n: ms or STW_TIME_NONE */
    uint32_t *subject, *document, *source, *section; /* n: intern ids */
    char **chunk_ids;           /* n, sorted bytewise (row order) */
    /* label bitmaps over rows (bit r of word r/64), built at load: the allow-set of a grant is
     * conf_le[clearance] AND NOT (OR of the compartments the grant lacks) */
    size_t words;
    uint64_t *conf_le[STW_CONF_V + 1];
    uint64_t *comp_rows[STW_MAX_LABELS];
    struct posting by_subject, by_document; /* rows per intern id */
    int has_rows;       /* rows.jsonl exists (not for versions published before it did) */
    const char *rows_map; /* rows.jsonl, in memory or mapped (NULL when empty); immutable */
    size_t rows_len;
    int rows_mapped;      /* rows_map is a mapping of the file, not a copy */
    uint64_t *row_off;  /* n + 1 byte offsets into rows.jsonl */
    size_t ncomp_names;
    char comp_names[STW_MAX_LABELS][STW_LABEL_MAX + 1];
    struct intern strings;
};

/* ---- intern table ------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

static uint32_t intern_find(const struct intern *t, const char *s)
{
    if (s == NULL || t->nslots == 0)
        return 0;
    for (size_t i = hash_str(s) & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
        uint32_t id = t->slots[i];
        if (id == 0)
            return 0;
        if (strcmp(t->strs[id - 1], s) == 0)
            return id;
    }
}

static int intern_grow(struct intern *t)
{
    size_t ns = t->nslots ? t->nslots * 2 : 1024;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (slots == NULL)
        return -1;
    for (size_t id = 1; id <= t->n; id++) {
        size_t i = hash_str(t->strs[id - 1]) & (ns - 1);
        while (slots[i] != 0)
            i = (i + 1) & (ns - 1);
        slots[i] = (uint32_t)id;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = ns;
    return 0;
}

/* id of s, adding it; 0 for NULL s; UINT32_MAX on out of memory */
static uint32_t intern_add(struct intern *t, const char *s)
{
    uint32_t id;
    size_t i;

    if (s == NULL)
        return 0;
    id = intern_find(t, s);
    if (id != 0)
        return id;
    if ((t->n + 1) * 2 > t->nslots && intern_grow(t) != 0)
        return UINT32_MAX;
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 256;
        char **p = realloc(t->strs, nc * sizeof *p);
        if (p == NULL)
            return UINT32_MAX;
        t->strs = p;
        t->cap = nc;
    }
    t->strs[t->n] = strdup(s);
    if (t->strs[t->n] == NULL)
        return UINT32_MAX;
    id = (uint32_t)++t->n;
    for (i = hash_str(s) & (t->nslots - 1); t->slots[i] != 0; i = (i + 1) & (t->nslots - 1))
        ;
    t->slots[i] = id;
    return id;
}

static void intern_free(struct intern *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->strs[i]);
    free(t->strs);
    free(t->slots);
}

/* ---- vset load ---------------------------------------------------------------------------- */

/* The cells' bounds and runs (build_cells), and no cells after it (vs->cell stays: the
 * records' order was made with it) */
static void cells_free(struct vset *vs)
{
    free(vs->cmean);
    free(vs->crad);
    free(vs->coff);
    free(vs->ccodes);
    free(vs->cscale);
    free(vs->cl1);
    free(vs->csq);
    free(vs->csum);
    vs->cmean = vs->crad = vs->cscale = vs->cl1 = vs->csq = NULL;
    vs->coff = NULL;
    vs->ccodes = NULL;
    vs->csum = NULL;
    vs->ncells = vs->ngroups = 0;
}

static void vset_free(struct vset *vs)
{
    if (vs == NULL)
        return;
    if (vs->allowed != NULL) {
        for (size_t i = 0; i < ACACHE_SLOTS; i++) {
            free(vs->allowed->slot[i].key);
            free(vs->allowed->slot[i].bits);
            free(vs->allowed->slot[i].pbits);
        }
        pthread_mutex_destroy(&vs->allowed->mu);
        free(vs->allowed);
    }
    if (vs->chunk_ids != NULL)
        for (size_t i = 0; i < vs->n; i++)
            free(vs->chunk_ids[i]);
    free(vs->chunk_ids);
    fx_walk_free(vs->walk);
    util_huge_free(vs->qrows, vs->qbytes);
    util_huge_free(vs->brows, vs->bbytes);
    free(vs->qmean);
    free(vs->qperm);
    free(vs->qpos);
    free(vs->cell);
    cells_free(vs);
    if (vs->ix != NULL)
        fx_free(vs->ix); /* vec points into the index */
    else
        util_huge_free(vs->vec, vs->vbytes);
    free(vs->conf);
    free(vs->comp);
    free(vs->created);
    free(vs->subject);
    free(vs->document);
    free(vs->source);
    free(vs->section);
    for (size_t i = 0; i <= STW_CONF_V; i++)
        free(vs->conf_le[i]);
    for (size_t i = 0; i < STW_MAX_LABELS; i++)
        free(vs->comp_rows[i]);
    free(vs->by_subject.off);
    free(vs->by_subject.rows);
    free(vs->by_document.off);
    free(vs->by_document.rows);
    free(vs->row_off);
    if (vs->rows_mapped)
        munmap((void *)vs->rows_map, vs->rows_len);
    else
        util_huge_free((void *)vs->rows_map, vs->rows_len);
    intern_free(&vs->strings);
    free(vs);
}

static stw_code read_vectors(struct vset *vs, const char *path, stw_error *err)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    size_t bytes = vs->n * vs->dim * sizeof(float);

    if (f == NULL)
        return stw_errorf(err, STW_INDEX, "version_files", "cannot open %s: %s", path,
                          strerror(errno));
    if (fstat(fileno(f), &sb) != 0 || (size_t)sb.st_size != bytes) {
        fclose(f);
        return stw_errorf(err, STW_INDEX, "version_files",
                          "%s has %lld bytes, expected %zu", path, (long long)sb.st_size, bytes);
    }
    vs->vec = util_huge_alloc(bytes);
    if (vs->vec == NULL) {
        fclose(f);
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory loading %s", path);
    }
    vs->vbytes = bytes;
    if (fread(vs->vec, 1, bytes, f) != bytes) {
        fclose(f);
        return stw_errorf(err, STW_INDEX, "version_files", "short read on %s", path);
    }
    fclose(f);
    return STW_OK;
}

static uint64_t comp_bits(const struct vset *vs, const char *json)
{
    cJSON *arr = cJSON_Parse(json), *it;
    uint64_t bits = 0;

    cJSON_ArrayForEach(it, arr)
    {
        for (size_t i = 0; cJSON_IsString(it) && i < vs->ncomp_names; i++)
            if (strcmp(vs->comp_names[i], it->valuestring) == 0)
                bits |= 1ull << i;
    }
    cJSON_Delete(arr);
    return bits;
}

static int posting_build(const uint32_t *ids, size_t n, size_t nids, struct posting *p)
{
    p->off = calloc(nids + 2, sizeof *p->off);
    p->rows = malloc((n ? n : 1) * sizeof *p->rows);
    if (p->off == NULL || p->rows == NULL)
        return -1;
    for (size_t r = 0; r < n; r++)
        p->off[ids[r] + 1]++;
    for (size_t i = 1; i <= nids + 1; i++)
        p->off[i] += p->off[i - 1];
    for (size_t r = 0; r < n; r++) /* off[id] is the next free slot while filling */
        p->rows[p->off[ids[r]]++] = (uint32_t)r;
    for (size_t i = nids + 1; i > 0; i--) /* shift back: off[id] = first slot again */
        p->off[i] = p->off[i - 1];
    p->off[0] = 0;
    return 0;
}

/* Label bitmaps and provenance postings; 0 on success. */
static int build_label_index(struct vset *vs)
{
    size_t w = (vs->n + 63) / 64;
    vs->words = w;
    for (int c = 0; c <= STW_CONF_V; c++) {
        vs->conf_le[c] = calloc(w ? w : 1, sizeof(uint64_t));
        if (vs->conf_le[c] == NULL)
            return -1;
    }
    for (size_t j = 0; j < vs->ncomp_names; j++) {
        vs->comp_rows[j] = calloc(w ? w : 1, sizeof(uint64_t));
        if (vs->comp_rows[j] == NULL)
            return -1;
    }
    for (size_t r = 0; r < vs->n; r++) {
        uint64_t bit = 1ull << (r & 63);
        for (int c = vs->conf[r]; c <= STW_CONF_V; c++)
            vs->conf_le[c][r >> 6] |= bit;
        for (size_t j = 0; j < vs->ncomp_names; j++)
            if (vs->comp[r] & (1ull << j))
                vs->comp_rows[j][r >> 6] |= bit;
    }
    if (posting_build(vs->subject, vs->n, vs->strings.n, &vs->by_subject) != 0 ||
        posting_build(vs->document, vs->n, vs->strings.n, &vs->by_document) != 0)
        return -1;
    return 0;
}

/* rows.jsonl + rows.idx, when the version has them (has_rows 0 otherwise). An answer reads its
 * k rows in place, without a system call or a copy each (they were a pread and a malloc per
 * returned row). A rows file up to memory_max bytes is read into memory on 2 MB pages: mapped,
 * each query's first touch of a page faulted for ~30 us on this project's VMs (1.7 faults a
 * query at 1 % of 200k in a fresh process). A larger one is mapped (a published version's
 * files never change) and its pages come and go with the page cache. */
static stw_code open_rows(struct vset *vs, const char *dir, size_t memory_max, stw_error *err)
{
    char path[4200];
    size_t bytes = (vs->n + 1) * sizeof(uint64_t);
    struct stat sb;
    void *map;
    int fd;

    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_ROWS_INDEX);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return STW_OK; /* published before per-row files existed: SQLite serves the rows */
    vs->row_off = malloc(bytes);
    if (vs->row_off == NULL || fstat(fd, &sb) != 0 || (size_t)sb.st_size != bytes ||
        util_pread_all(fd, vs->row_off, bytes, 0) != 0) {
        close(fd);
        return stw_errorf(err, STW_INDEX, "version_files", "%s is not %zu bytes", path, bytes);
    }
    close(fd);
    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_ROWS_FILE);
    fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != vs->row_off[vs->n]) {
        if (fd >= 0)
            close(fd);
        return stw_errorf(err, STW_INDEX, "version_files", "%s does not match %s", path,
                          CATALOG_ROWS_INDEX);
    }
    /* every row's range inside the file: the answer path reads the map without checks */
    for (size_t i = 0; i < vs->n; i++) {
        if (vs->row_off[i] > vs->row_off[i + 1]) {
            close(fd);
            return stw_errorf(err, STW_INDEX, "version_files", "%s: row %zu ends before it starts",
                              CATALOG_ROWS_INDEX, i);
        }
    }
    if (sb.st_size > 0) {
        size_t len = (size_t)sb.st_size;
        const char *why = NULL;
        if (len > memory_max) {
            map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
            why = map == MAP_FAILED ? strerror(errno) : NULL;
            vs->rows_mapped = map != MAP_FAILED;
        } else if ((map = util_huge_alloc(len)) == NULL) {
            close(fd);
            return stw_errorf(err, STW_NOMEM, NULL, "out of memory loading %s", path);
        } else if (util_pread_all(fd, map, len, 0) != 0) {
            why = errno != 0 ? strerror(errno) : "it is shorter than its size";
            util_huge_free(map, len);
        }
        /* (Not made read-only with mprotect: that cost the 1 % band of 200k 0.073 -> 0.095-0.142
         * ms in two alternating triples on this VM; the rows are only read through const.) */
        if (why != NULL) {
            close(fd);
            return stw_errorf(err, STW_INDEX, "version_files", "cannot load %s: %s", path, why);
        }
        vs->rows_map = map;
        vs->rows_len = len;
    }
    close(fd);
    vs->has_rows = 1;
    return STW_OK;
}

/* sort key of a row for the records' label order */
struct qorder {
    uint8_t conf;
    uint64_t comp;
    uint32_t cell;
    uint32_t row;
};

static int qorder_cmp(const void *a, const void *b)
{
    const struct qorder *x = a, *y = b;
    if (x->conf != y->conf)
        return x->conf < y->conf ? -1 : 1;
    if (x->comp != y->comp)
        return x->comp < y->comp ? -1 : 1;
    if (x->cell != y->cell)
        return x->cell < y->cell ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* qperm and qpos: the rows in label order (see struct vset). 0, or -1 out of memory. */
static int build_order(struct vset *vs)
{
    size_t n = vs->n;
    struct qorder *o = malloc(n * sizeof *o);

    vs->qperm = malloc(n * sizeof *vs->qperm);
    vs->qpos = malloc(n * sizeof *vs->qpos);
    if (o == NULL || vs->qperm == NULL || vs->qpos == NULL) {
        free(o);
        return -1;
    }
    for (size_t r = 0; r < n; r++)
        o[r] = (struct qorder){vs->conf[r], vs->comp[r], vs->cell ? vs->cell[r] : 0,
                               (uint32_t)r};
    qsort(o, n, sizeof *o, qorder_cmp);
    for (size_t p = 0; p < n; p++) {
        vs->qperm[p] = o[p].row;
        vs->qpos[o[p].row] = (uint32_t)p;
    }
    free(o);
    return 0;
}

/* After a row's sign bits in brows. The estimate of q.x' for the centred row x' is
 * f * q.sign(x') with f = |x'|^2 / |x'|_1 (RaBitQ's, Gao & Long 2024: the projection of x' on
 * its sign vector, rescaled), and q.sign(x') = 2 * (sum of q over the set bits) - sum(q). */
struct bin_tail {
    float f;
    /* the key's exact term: for ip m.x' (q.x' = (q - m).x' + m.x', and only the first is
     * estimated); for l2 -|x'|^2 (the key is 2 q.x' - |x'|^2) */
    float aux;
    float norm;  /* |x'|, for the error bound */
    int32_t pop; /* set bits: a scan would count them per row, every query */
};

/* Symmetric 8-bit codes per row (scale = the row's largest |component| / 127), on 2 MB pages
 * (util_huge_alloc), each record ending in struct fx_qtail (faiss_bridge.h: the graph walk
 * reads a copy of them in its blocks). (Session 5 advised huge pages for these records alone
 * and measured scans at 10 % of 100k rows at 1.8 ms instead of 0.7; session 10, with every
 * large array of the version on them, measured every band as fast or faster: docs/search.md,
 * "Huge pages".) Without the memory the version is still searched, by the exact scan only.
 * The 1-bit codes (brows) are made in the same pass. */
static void build_codes(struct vset *vs)
{
    size_t n = vs->n, d = vs->dim;
    size_t stride = (d + sizeof(struct fx_qtail) + 63) / 64 * 64;
    size_t bwords = (d + 63) / 64;
    size_t bstride = (bwords * 8 + sizeof(struct bin_tail) + 63) / 64 * 64;
    void *map, *bmap;

    double *acc;
    float *x;
    uint64_t *sign;

    if (n == 0 || d == 0)
        return;
    acc = calloc(d, sizeof *acc);
    x = malloc(d * sizeof *x);
    sign = malloc(bwords * sizeof *sign);
    vs->qmean = malloc(d * sizeof *vs->qmean);
    vs->qbytes = n * stride;
    vs->bbytes = n * bstride;
    map = util_huge_alloc(vs->qbytes);
    bmap = util_huge_alloc(vs->bbytes);
    if (acc == NULL || x == NULL || sign == NULL || vs->qmean == NULL || map == NULL ||
        bmap == NULL || build_order(vs) != 0) {
        free(sign);
        util_huge_free(map, vs->qbytes);
        util_huge_free(bmap, vs->bbytes);
        free(acc);
        free(x);
        free(vs->qmean);
        free(vs->qperm);
        free(vs->qpos);
        vs->qmean = NULL;
        vs->qperm = vs->qpos = NULL;
        return;
    }
    /* Centred first: with a large common offset (all values near 100, say) one scale per row
     * is coarser than the differences between rows and the 8-bit ranking is noise (recall
     * 0.005 at offset 100 in a review's test); centring leaves only the differences. The
     * ranking is unchanged by it: q.(x - m) = q.x - q.m, the same shift for every row, and
     * |q - x| = |(q - m) - (x - m)|. */
    for (size_t r = 0; r < n; r++)
        for (size_t i = 0; i < d; i++)
            acc[i] += vs->vec[r * d + i];
    for (size_t i = 0; i < d; i++)
        vs->qmean[i] = (float)(acc[i] / (double)n);
    vs->qrows = map;
    vs->qstride = stride;
    vs->brows = bmap; /* zero-filled: bits past dim stay 0 */
    vs->bstride = bstride;
    for (size_t r = 0; r < n; r++) {
        int8_t *c = (int8_t *)(vs->qrows + (size_t)vs->qpos[r] * stride);
        uint8_t *brec = vs->brows + (size_t)vs->qpos[r] * bstride;
        struct fx_qtail t;
        struct bin_tail bt = {0, 0, 0, 0};
        float m = 0, inv, l1 = 0;
        memset(sign, 0, bwords * sizeof *sign);
        for (size_t i = 0; i < d; i++) {
            x[i] = vs->vec[r * d + i] - vs->qmean[i];
            m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
            l1 += fabsf(x[i]);
            if (x[i] > 0)
                sign[i >> 6] |= 1ull << (i & 63);
        }
        t.scale = m > 0 ? m / 127.0f : 1.0f;
        t.sum = 0;
        inv = 1.0f / t.scale;
        for (size_t i = 0; i < d; i++) {
            long q = lrintf(x[i] * inv);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            c[i] = (int8_t)q;
            t.sum += (int32_t)q;
        }
        t.sqnorm = dist_dot(x, x, d);
        memcpy((uint8_t *)c + d, &t, sizeof t);
        vs->qscale_max = t.scale > vs->qscale_max ? t.scale : vs->qscale_max;
        vs->ql1_max = l1 > vs->ql1_max ? l1 : vs->ql1_max;
        vs->qnorm_max = sqrtf(t.sqnorm) > vs->qnorm_max ? sqrtf(t.sqnorm) : vs->qnorm_max;
        bt.aux = vs->metric == STW_METRIC_L2 ? -t.sqnorm : dist_dot(vs->qmean, x, d);
        bt.norm = sqrtf(t.sqnorm);
        bt.f = l1 > 0 ? t.sqnorm / l1 : 0;
        bt.pop = 0;
        for (size_t w = 0; w < bwords; w++)
            bt.pop += __builtin_popcountll(sign[w]);
        memcpy(brec, sign, bwords * sizeof *sign);
        memcpy(brec + bwords * sizeof *sign, &bt, sizeof bt);
    }
    free(sign);
    free(acc);
    free(x);
}

static void bin_calibrate(struct vset *vs);
static void cells_calibrate(struct vset *vs);

/* vs->cell from the version's cells file, when it has a valid one (else no cells: the cell
 * scan is an optimisation, never needed for an answer). */
static void read_cells(struct vset *vs, const char *dir)
{
    struct catalog_cells_head head;
    char path[4400];
    int fd, ok = 0;

    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_CELLS_FILE);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    vs->cell = malloc((vs->n ? vs->n : 1) * sizeof *vs->cell);
    /* (at most one cell per STW_CELL_ROWS rows, as publish makes them: a file claiming more
     * would make the means' arrays and every query's pass over them as large as it says) */
    if (vs->cell != NULL && pread(fd, &head, sizeof head, 0) == (ssize_t)sizeof head &&
        memcmp(head.magic, CATALOG_CELLS_MAGIC, sizeof head.magic) == 0 && head.rows == vs->n &&
        head.cells >= 2 && head.cells <= vs->n / STW_CELL_ROWS &&
        pread(fd, vs->cell, vs->n * sizeof *vs->cell, sizeof head) ==
            (ssize_t)(vs->n * sizeof *vs->cell)) {
        ok = 1;
        for (size_t r = 0; r < vs->n && ok; r++)
            ok = vs->cell[r] < head.cells;
    }
    close(fd);
    if (!ok) {
        free(vs->cell);
        vs->cell = NULL;
        return;
    }
    vs->ncells = (size_t)head.cells;
}

/* The cells' bounds and runs (struct vset), after build_codes ordered the records. Without
 * the memory, or with more label groups than CELL_MAX_GROUPS, the version has no cells. */
#define CELL_MAX_GROUPS 64

static void build_cells(struct vset *vs)
{
    size_t n = vs->n, d = vs->dim, nc = vs->ncells, ng = 0;
    uint32_t *count;

    if (vs->cell == NULL || vs->qperm == NULL || nc == 0)
        goto none;
    for (size_t p = 0; p < n; p++) {
        uint32_t a = vs->qperm[p], b = p > 0 ? vs->qperm[p - 1] : 0;
        if (p == 0 || vs->conf[a] != vs->conf[b] || vs->comp[a] != vs->comp[b])
            ng++;
    }
    if (ng > CELL_MAX_GROUPS)
        goto none;
    vs->ngroups = ng;
    vs->cmean = calloc(nc * d, sizeof *vs->cmean);
    vs->crad = calloc(nc, sizeof *vs->crad);
    vs->coff = malloc(ng * (nc + 1) * sizeof *vs->coff);
    count = calloc(nc, sizeof *count);
    if (vs->cmean == NULL || vs->crad == NULL || vs->coff == NULL || count == NULL) {
        free(count);
        goto none;
    }
    /* the means (of the centred rows) */
    for (size_t r = 0; r < n; r++) {
        float *m = vs->cmean + (size_t)vs->cell[r] * d;
        count[vs->cell[r]]++;
        for (size_t i = 0; i < d; i++)
            m[i] += vs->vec[r * d + i] - vs->qmean[i];
    }
    for (size_t j = 0; j < nc; j++)
        for (size_t i = 0; i < d && count[j] > 0; i++)
            vs->cmean[j * d + i] /= (float)count[j];
    free(count);
    /* the radii, in double, then rounded up by more than float's error in a key */
    for (size_t r = 0; r < n; r++) {
        const float *m = vs->cmean + (size_t)vs->cell[r] * d;
        double s = 0;
        for (size_t i = 0; i < d; i++) {
            double v = (double)vs->vec[r * d + i] - vs->qmean[i] - m[i];
            s += v * v;
        }
        float rad = (float)(sqrt(s) * (1.0 + 1e-5) + 1e-6);
        if (rad > vs->crad[vs->cell[r]])
            vs->crad[vs->cell[r]] = rad;
    }
    /* the means' 8-bit codes, quantised as build_codes does a row */
    vs->cstride = (d + 63) / 64 * 64;
    vs->ccodes = aligned_alloc(64, nc * vs->cstride);
    vs->cscale = malloc(nc * sizeof *vs->cscale);
    vs->cl1 = malloc(nc * sizeof *vs->cl1);
    vs->csq = malloc(nc * sizeof *vs->csq);
    vs->csum = malloc(nc * sizeof *vs->csum);
    if (vs->ccodes == NULL || vs->cscale == NULL || vs->cl1 == NULL || vs->csq == NULL ||
        vs->csum == NULL)
        goto none;
    memset(vs->ccodes, 0, nc * vs->cstride);
    for (size_t j = 0; j < nc; j++) {
        const float *m = vs->cmean + j * d;
        int8_t *code = vs->ccodes + j * vs->cstride;
        float top = 0, l1 = 0, inv;
        for (size_t i = 0; i < d; i++) {
            top = fabsf(m[i]) > top ? fabsf(m[i]) : top;
            l1 += fabsf(m[i]);
        }
        vs->cscale[j] = top > 0 ? top / 127.0f : 1.0f;
        vs->cl1[j] = l1;
        vs->csq[j] = dist_dot(m, m, d);
        vs->csum[j] = 0;
        inv = 1.0f / vs->cscale[j];
        for (size_t i = 0; i < d; i++) {
            long q = lrintf(m[i] * inv);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            code[i] = (int8_t)q;
            vs->csum[j] += (int32_t)q;
        }
    }
    /* the runs: group g's records are [start, end), sorted by cell within */
    for (size_t p = 0, g = 0; p < n; g++) {
        uint32_t a = vs->qperm[p];
        size_t end = p;
        while (end < n && vs->conf[vs->qperm[end]] == vs->conf[a] &&
               vs->comp[vs->qperm[end]] == vs->comp[a])
            end++;
        size_t q = p;
        for (size_t j = 0; j <= nc; j++) {
            while (q < end && vs->cell[vs->qperm[q]] < j)
                q++;
            vs->coff[j * ng + g] = (uint32_t)q;
        }
        p = end;
    }
    return;
none:
    cells_free(vs);
}

static stw_code vset_load(const struct vcache *vc, sqlite3 *db, const char *data_dir,
                          const stw_product *p,
                          const stw_version_info *v, int64_t vid, struct vset **out,
                          stw_error *err)
{
    struct vset *vs = calloc(1, sizeof *vs);
    sqlite3_stmt *stmt = NULL;
    char dir[4096], path[4200];
    size_t r = 0, n = v->chunks;
    int step;
    stw_code rc;

    if (vs == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    vs->version_id = vid;
    vs->allowed = calloc(1, sizeof *vs->allowed);
    if (vs->allowed == NULL) {
        free(vs);
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    }
    pthread_mutex_init(&vs->allowed->mu, NULL);
    snprintf(vs->product, sizeof vs->product, "%s", p->name);
    snprintf(vs->version, sizeof vs->version, "%s", v->name);
    vs->n = n;
    vs->dim = p->contract.dimension;
    vs->metric = p->contract.metric;
    vs->ncomp_names = p->contract.ncompartments;
    memcpy(vs->comp_names, p->contract.compartments, sizeof vs->comp_names);
    vs->conf = malloc(n + 1);
    vs->comp = malloc((n + 1) * sizeof *vs->comp);
    vs->created = malloc((n + 1) * sizeof *vs->created);
    vs->subject = malloc((n + 1) * sizeof(uint32_t));
    vs->document = malloc((n + 1) * sizeof(uint32_t));
    vs->source = malloc((n + 1) * sizeof(uint32_t));
    vs->section = malloc((n + 1) * sizeof(uint32_t));
    vs->chunk_ids = calloc(n + 1, sizeof(char *));
    if (!vs->conf || !vs->comp || !vs->created || !vs->subject || !vs->document ||
        !vs->source || !vs->section || !vs->chunk_ids) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto fail;
    }
    if (catalog_version_dir(data_dir, p->name, v->name, dir, sizeof dir) != 0) {
        rc = stw_errorf(err, STW_INTERNAL, "path_too_long", "data folder path too long");
        goto fail;
    }
    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_INDEX_FILE);
    if (access(path, F_OK) == 0) {
        /* the graph holds the same vectors: use its copy instead of loading a second one */
        rc = fx_load(path, &vs->ix, err);
        if (rc != STW_OK)
            goto fail;
        if (fx_rows(vs->ix) != n) {
            rc = stw_errorf(err, STW_INDEX, "version_files", "%s has %zu rows, expected %zu",
                            path, fx_rows(vs->ix), n);
            goto fail;
        }
        vs->vec = (float *)fx_vectors(vs->ix); /* borrowed; never written */
    } else {
        snprintf(path, sizeof path, "%s/%s", dir, CATALOG_VECTORS_FILE);
        rc = read_vectors(vs, path, err);
        if (rc != STW_OK)
            goto fail;
    }
    rc = store_prepare(db, &stmt,
                       "SELECT chunk_id, conf, compartments, created_ms, subject, document_id,"
                       " source_system, section FROM chunks WHERE version_id = ?1"
                       " ORDER BY chunk_id",
                       err);
    if (rc != STW_OK)
        goto fail;
    sqlite3_bind_int64(stmt, 1, vid);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        uint32_t ids[4];
        if (r == n) {
            rc = stw_errorf(err, STW_INDEX, "version_files",
                            "version %s@%s has more chunks than published", p->name, v->name);
            goto fail;
        }
        vs->chunk_ids[r] = strdup((const char *)sqlite3_column_text(stmt, 0));
        vs->conf[r] = (uint8_t)sqlite3_column_int(stmt, 1);
        vs->comp[r] = comp_bits(vs, store_col_text(stmt, 2));
        vs->created[r] = sqlite3_column_type(stmt, 3) == SQLITE_NULL
                             ? STW_TIME_NONE
                             : sqlite3_column_int64(stmt, 3);
        for (int f = 0; f < 4; f++)
            ids[f] = intern_add(&vs->strings, store_col_text(stmt, 4 + f));
        if (vs->chunk_ids[r] == NULL || ids[0] == UINT32_MAX || ids[1] == UINT32_MAX ||
            ids[2] == UINT32_MAX || ids[3] == UINT32_MAX) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto fail;
        }
        vs->subject[r] = ids[0];
        vs->document[r] = ids[1];
        vs->source[r] = ids[2];
        vs->section[r] = ids[3];
        r++;
    }
    if (step != SQLITE_DONE) {
        rc = store_error(db, err);
        goto fail;
    }
    if (r != n) {
        rc = stw_errorf(err, STW_INDEX, "version_files", "version %s@%s has %zu rows, expected %zu",
                        p->name, v->name, r, n);
        goto fail;
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    if (!vc->no_codes) { /* in label order: after the labels */
        read_cells(vs, dir);
        build_codes(vs);
        build_cells(vs);
        bin_calibrate(vs);
        cells_calibrate(vs);
        /* without them (or the memory) the walk scores rows in float, on FAISS's lists */
        if (!vc->no_walk && vs->ix != NULL && vs->qrows != NULL &&
            fx_walk_build(vs->ix, vs->qrows, vs->qpos, vs->qstride, &vs->walk, NULL) != STW_OK)
            vs->walk = NULL;
    }
    if (build_label_index(vs) != 0) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto fail;
    }
    rc = open_rows(vs, dir, vc->rows_memory_max, err);
    if (rc != STW_OK)
        goto fail;
    *out = vs;
    return STW_OK;
fail:
    sqlite3_finalize(stmt);
    vs->n = r; /* only the first r chunk ids were allocated */
    vset_free(vs);
    return rc;
}

void vcache_init(struct vcache *vc)
{
    memset(vc, 0, sizeof *vc);
    pthread_mutex_init(&vc->mu, NULL);
}

void vcache_free(struct vcache *vc)
{
    for (size_t i = 0; i < vc->n; i++)
        vset_free(vc->sets[i]);
    free(vc->sets);
    pthread_mutex_destroy(&vc->mu);
}

stw_code vcache_get(struct vcache *vc, sqlite3 *db, const char *data_dir,
                    const stw_product *product, const stw_version_info *v, int64_t version_id,
                    const struct vset **out, stw_error *err)
{
    struct vset *vs = NULL;
    stw_code rc = STW_OK;

    pthread_mutex_lock(&vc->mu);
    for (size_t i = 0; i < vc->n; i++) {
        if (vc->sets[i]->version_id == version_id) {
            *out = vc->sets[i];
            pthread_mutex_unlock(&vc->mu);
            return STW_OK;
        }
    }
    /* Loading under the lock keeps two threads from loading one version twice; loads are
     * rare (once per version per process). */
    if (vc->n == vc->cap) {
        size_t nc = vc->cap ? vc->cap * 2 : 16;
        struct vset **p = realloc(vc->sets, nc * sizeof *p);
        if (p == NULL) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto done;
        }
        vc->sets = p;
        vc->cap = nc;
    }
    rc = vset_load(vc, db, data_dir, product, v, version_id, &vs, err);
    if (rc != STW_OK)
        goto done;
    vc->sets[vc->n++] = vs;
    *out = vs;
done:
    pthread_mutex_unlock(&vc->mu);
    return rc;
}

int vset_row_json(const struct vset *vs, size_t row, const char **json, size_t *len)
{
    uint64_t off;

    if (!vs->has_rows || row >= vs->n)
        return 1;
    if (vs->rows_map == NULL) /* an empty rows file: no row has its fields */
        return -1;
    off = vs->row_off[row];
    *json = vs->rows_map + off;
    *len = (size_t)(vs->row_off[row + 1] - off);
    return 0;
}

const char *vset_row_key(const struct vset *vs, size_t row, int which)
{
    const uint32_t *col = which == 0 ? vs->source : which == 1 ? vs->document : vs->subject;
    uint32_t id = row < vs->n ? col[row] : 0;
    return id == 0 ? NULL : vs->strings.strs[id - 1];
}

void vset_prefetch_row(const struct vset *vs, size_t row, int stage)
{
    const uint32_t *cols[3] = {vs->source, vs->document, vs->subject};

    if (row >= vs->n)
        return;
    if (stage == 0) {
        if (vs->has_rows)
            dist_prefetch(vs->row_off + row, 2 * sizeof *vs->row_off, 0);
        dist_prefetch(vs->chunk_ids + row, sizeof *vs->chunk_ids, 0);
        for (int c = 0; c < 3; c++)
            dist_prefetch(cols[c] + row, sizeof *cols[c], 0);
        return;
    }
    if (vs->has_rows && vs->rows_map != NULL) { /* its first 4 KB: a long text streams */
        size_t len = (size_t)(vs->row_off[row + 1] - vs->row_off[row]);
        dist_prefetch(vs->rows_map + vs->row_off[row], len < 4096 ? len : 4096, 0);
    }
    dist_prefetch(vs->chunk_ids[row], 1, 0);
    for (int c = 0; c < 3; c++)
        if (cols[c][row] != 0)
            dist_prefetch(vs->strings.strs[cols[c][row] - 1], 1, 0);
}

size_t vset_rows(const struct vset *vs)
{
    return vs->n;
}

const char *vset_chunk_id(const struct vset *vs, size_t row)
{
    return row < vs->n ? vs->chunk_ids[row] : NULL;
}

/* ---- allow-set ---------------------------------------------------------------------------- */

static int cmp_id(const void *key, const void *elem)
{
    return strcmp((const char *)key, *(char *const *)elem);
}

static int in_list(uint32_t id, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

/* Map filter strings to this version's intern ids; 0 if some list matches nothing. */
static int filter_ids(const struct vset *vs, const stw_filter *f, uint32_t *subj, uint32_t *srcs,
                      size_t *nsrc, uint32_t *secs, size_t *nsec)
{
    *subj = 0;
    *nsrc = *nsec = 0;
    if (f->subject != NULL) {
        *subj = intern_find(&vs->strings, f->subject);
        if (*subj == 0)
            return 0;
    }
    for (size_t i = 0; i < f->nsource_systems; i++) {
        uint32_t id = intern_find(&vs->strings, f->source_systems[i]);
        if (id != 0 && *nsrc < STW_MAX_FILTER_VALUES)
            srcs[(*nsrc)++] = id;
    }
    if (f->nsource_systems > 0 && *nsrc == 0)
        return 0;
    for (size_t i = 0; i < f->nsections; i++) {
        uint32_t id = intern_find(&vs->strings, f->sections[i]);
        if (id != 0 && *nsec < STW_MAX_FILTER_VALUES)
            secs[(*nsec)++] = id;
    }
    if (f->nsections > 0 && *nsec == 0)
        return 0;
    return 1;
}

static int row_passes_filter(const struct vset *vs, const stw_filter *f, size_t r,
                             const uint32_t *srcs, size_t nsrc, const uint32_t *secs, size_t nsec)
{
    if (nsrc > 0 && !in_list(vs->source[r], srcs, nsrc))
        return 0;
    if (nsec > 0 && !in_list(vs->section[r], secs, nsec))
        return 0;
    if (f->created_from != STW_TIME_NONE &&
        (vs->created[r] == STW_TIME_NONE || vs->created[r] < f->created_from))
        return 0;
    if (f->created_to != STW_TIME_NONE &&
        (vs->created[r] == STW_TIME_NONE || vs->created[r] >= f->created_to))
        return 0;
    return 1;
}

static void clear_posting(const struct posting *p, uint32_t id, uint64_t *bits)
{
    for (uint32_t i = p->off[id]; i < p->off[id + 1]; i++) {
        uint32_t r = p->rows[i];
        bits[r >> 6] &= ~(1ull << (r & 63));
    }
}

/* Fills bits (words zeroed by the caller) with the rows visible to acc; returns the count.
 * Rules 1-3 come from the label bitmaps (one grant at a time, OR-ed: grants never merge),
 * rule 5 narrows, rule 4 removes. */
static size_t allow_set(const struct vset *vs, const struct access *acc, uint64_t *bits)
{
    const stw_filter *f = acc->filter;
    static const stw_filter no_filter = {NULL, 0, NULL, 0, NULL, STW_TIME_NONE, STW_TIME_NONE};
    uint32_t subj = 0, srcs[STW_MAX_FILTER_VALUES], secs[STW_MAX_FILTER_VALUES];
    size_t nsrc = 0, nsec = 0, count = 0, W = vs->words;
    int row_filter;

    if (f == NULL)
        f = &no_filter;
    if (acc->ngrants == 0 || !filter_ids(vs, f, &subj, srcs, &nsrc, secs, &nsec))
        return 0;
    for (size_t i = 0; i < acc->ngrants; i++) {
        const stw_grant *g = &acc->grants[i];
        const uint64_t *excluded[STW_MAX_LABELS];
        size_t nex = 0;
        if (g->clearance < STW_CONF_U || g->clearance > STW_CONF_V)
            continue; /* fail closed on a malformed grant */
        for (size_t j = 0; j < vs->ncomp_names; j++) {
            size_t c = 0;
            while (c < g->ncompartments && strcmp(vs->comp_names[j], g->compartments[c]) != 0)
                c++;
            if (c == g->ncompartments)
                excluded[nex++] = vs->comp_rows[j];
        }
        const uint64_t *cl = vs->conf_le[g->clearance];
        for (size_t w = 0; w < W; w++) {
            uint64_t m = 0;
            for (size_t e = 0; e < nex; e++)
                m |= excluded[e][w];
            bits[w] |= cl[w] & ~m;
        }
    }
    if (subj != 0) { /* keep only the subject's rows: walk its posting, not the version */
        const struct posting *p = &vs->by_subject;
        uint64_t *keep = calloc(W ? W : 1, sizeof *keep);
        if (keep == NULL) {
            memset(bits, 0, W * sizeof *bits); /* fail closed */
            return 0;
        }
        for (uint32_t i = p->off[subj]; i < p->off[subj + 1]; i++) {
            uint32_t r = p->rows[i];
            keep[r >> 6] |= bits[r >> 6] & (1ull << (r & 63));
        }
        memcpy(bits, keep, W * sizeof *bits);
        free(keep);
    }
    row_filter = nsrc > 0 || nsec > 0 || f->created_from != STW_TIME_NONE ||
                 f->created_to != STW_TIME_NONE;
    if (row_filter)
        for (size_t w = 0; w < W; w++) {
            uint64_t word = bits[w];
            while (word != 0) {
                size_t r = w * 64 + (size_t)__builtin_ctzll(word);
                word &= word - 1;
                if (!row_passes_filter(vs, f, r, srcs, nsrc, secs, nsec))
                    bits[w] &= ~(1ull << (r & 63));
            }
        }
    /* rule 4: suppressions remove rows, whatever granted them */
    for (size_t i = 0; i < acc->nsuppressions; i++) {
        const stw_suppression *sp = &acc->suppressions[i];
        if (sp->kind == STW_SUPP_CHUNK) {
            char *const *hit = bsearch(sp->value, vs->chunk_ids, vs->n, sizeof(char *), cmp_id);
            if (hit != NULL) {
                size_t r = (size_t)(hit - vs->chunk_ids);
                bits[r >> 6] &= ~(1ull << (r & 63));
            }
        } else {
            uint32_t id = intern_find(&vs->strings, sp->value);
            if (id != 0)
                clear_posting(sp->kind == STW_SUPP_SUBJECT ? &vs->by_subject : &vs->by_document,
                              id, bits);
        }
    }
    for (size_t w = 0; w < W; w++)
        count += (size_t)__builtin_popcountll(bits[w]);
    return count;
}

/* ---- allow-set cache ---------------------------------------------------------------------- */

struct kbuf {
    char *p;
    size_t len, cap;
    int over;
};

/* a tag letter and a number */
static void kput(struct kbuf *k, char tag, long long v)
{
    int n;
    if (k->over)
        return;
    n = snprintf(k->p + k->len, k->cap - k->len, "%c%lld", tag, v);
    if (n < 0 || (size_t)n >= k->cap - k->len)
        k->over = 1;
    else
        k->len += (size_t)n;
}

/* a string, length-prefixed ("-" for NULL) */
static void kstr(struct kbuf *k, const char *s)
{
    size_t n;
    if (s == NULL) {
        kput(k, '-', 0);
        return;
    }
    n = strlen(s);
    kput(k, 'l', (long long)n);
    kput(k, ':', 0);
    if (k->over || n >= k->cap - k->len) {
        k->over = 1;
        return;
    }
    memcpy(k->p + k->len, s, n);
    k->len += n;
}

/* The access, spelled out; 0 if it does not fit in cap. */
static size_t access_key(const struct access *acc, char *buf, size_t cap)
{
    struct kbuf k = {buf, 0, cap, 0};
    const stw_filter *f = acc->filter;

    kput(&k, 'g', (long long)acc->ngrants);
    for (size_t i = 0; i < acc->ngrants; i++) {
        const stw_grant *g = &acc->grants[i];
        kput(&k, 'c', g->clearance);
        kput(&k, 'n', (long long)g->ncompartments);
        for (size_t c = 0; c < g->ncompartments; c++)
            kstr(&k, g->compartments[c]);
    }
    kput(&k, 's', (long long)acc->nsuppressions);
    for (size_t i = 0; i < acc->nsuppressions; i++) {
        kput(&k, 'k', acc->suppressions[i].kind);
        kstr(&k, acc->suppressions[i].value);
    }
    if (f == NULL) {
        kput(&k, 'F', 0);
    } else {
        kput(&k, 'f', 1);
        kstr(&k, f->subject);
        kput(&k, 'o', (long long)f->nsource_systems);
        for (size_t i = 0; i < f->nsource_systems; i++)
            kstr(&k, f->source_systems[i]);
        kput(&k, 'e', (long long)f->nsections);
        for (size_t i = 0; i < f->nsections; i++)
            kstr(&k, f->sections[i]);
        kput(&k, 'a', (long long)f->created_from);
        kput(&k, 'b', (long long)f->created_to);
    }
    return k.over ? 0 : k.len;
}

/* Needs ac->mu. The slot holding key, or NULL. */
static struct aslot *acache_find(struct acache *ac, const char *key, size_t keylen)
{
    for (size_t i = 0; i < ACACHE_SLOTS; i++) {
        struct aslot *sl = &ac->slot[i];
        if (sl->key != NULL && sl->keylen == keylen && memcmp(sl->key, key, keylen) == 0)
            return sl;
    }
    return NULL;
}

/* allow_set through the version's cache; key: access_key(acc) (0 long: not cached). */
static size_t allow_set_cached(const struct vset *vs, const struct access *acc, const char *key,
                               size_t keylen, uint64_t *bits)
{
    struct acache *ac = vs->allowed;
    size_t W = vs->words, count;
    struct aslot *sl;
    char *kcopy;
    uint64_t *bcopy;

    if (keylen == 0)
        return allow_set(vs, acc, bits);
    pthread_mutex_lock(&ac->mu);
    sl = acache_find(ac, key, keylen);
    if (sl != NULL) {
        memcpy(bits, sl->bits, W * sizeof *bits);
        count = sl->count;
        sl->used = ++ac->clock;
    }
    pthread_mutex_unlock(&ac->mu);
    if (sl != NULL)
        return count;

    count = allow_set(vs, acc, bits);
    kcopy = malloc(keylen);
    bcopy = malloc((W ? W : 1) * sizeof *bcopy);
    if (kcopy != NULL && bcopy != NULL) {
        memcpy(kcopy, key, keylen);
        memcpy(bcopy, bits, W * sizeof *bits);
        pthread_mutex_lock(&ac->mu);
        if (acache_find(ac, key, keylen) == NULL) { /* else another query kept it first */
            sl = &ac->slot[0]; /* an empty slot, else the least recently used */
            for (size_t i = 1; i < ACACHE_SLOTS && sl->key != NULL; i++)
                if (ac->slot[i].key == NULL || ac->slot[i].used < sl->used)
                    sl = &ac->slot[i];
            char *old_key = sl->key;
            uint64_t *old_bits = sl->bits;
            free(sl->pbits); /* (small, and rare: an eviction) */
            sl->pbits = NULL;
            sl->key = kcopy;
            sl->keylen = keylen;
            sl->bits = bcopy;
            sl->count = count;
            sl->used = ++ac->clock;
            kcopy = old_key; /* freed below, outside the lock */
            bcopy = old_bits;
        }
        pthread_mutex_unlock(&ac->mu);
    }
    free(kcopy);
    free(bcopy);
    return count;
}

/* The allow-set bits (row order) in record order into pbits (zeroed by the caller), for the
 * scans: from acc's cache slot when a scan has made them before, else converted here and kept
 * in the slot (if it is still there). The conversion is one qpos lookup per allowed row, 12-16 %
 * of a scan's time at 1-10 % of 200k rows. key: as allow_set_cached's. */
static void allow_set_in_record_order(const struct vset *vs, const char *key, size_t keylen,
                                      const uint64_t *bits, uint64_t *pbits)
{
    struct acache *ac = vs->allowed;
    size_t W = vs->words;
    struct aslot *sl;
    uint64_t *copy;

    if (keylen > 0) {
        int hit = 0;
        pthread_mutex_lock(&ac->mu);
        sl = acache_find(ac, key, keylen);
        if (sl != NULL && sl->pbits != NULL) {
            memcpy(pbits, sl->pbits, W * sizeof *pbits);
            hit = 1;
        }
        pthread_mutex_unlock(&ac->mu);
        if (hit)
            return;
    }
    for (size_t w = 0; w < W; w++)
        for (uint64_t word = bits[w]; word != 0; word &= word - 1) {
            uint32_t p = vs->qpos[w * 64 + (size_t)__builtin_ctzll(word)];
            pbits[p >> 6] |= 1ull << (p & 63);
        }
    if (keylen == 0 || (copy = malloc((W ? W : 1) * sizeof *copy)) == NULL)
        return;
    memcpy(copy, pbits, W * sizeof *copy);
    pthread_mutex_lock(&ac->mu);
    sl = acache_find(ac, key, keylen);
    if (sl != NULL && sl->pbits == NULL) {
        sl->pbits = copy;
        copy = NULL;
    }
    pthread_mutex_unlock(&ac->mu);
    free(copy);
}

/* ---- distances ---------------------------------------------------------------------------- */

double search_score(int metric, float key)
{
    return metric == STW_METRIC_L2 ? sqrt((double)(-key)) : (double)key;
}

/* ---- top-k -------------------------------------------------------------------------------- */

/* a ranks before b: higher key, then lower row (chunk-id order) */
static int better(const struct hit *a, const struct hit *b)
{
    return a->key > b->key || (a->key == b->key && a->row < b->row);
}

/* heap[0] is the worst kept hit */
static void heap_sift_down(struct hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l]))
            w = l;
        if (r < n && better(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        struct hit t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void heap_push(struct hit *h, size_t *n, size_t k, struct hit x)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = x;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!better(&h[p], &h[i]))
                break;
            struct hit t = h[i];
            h[i] = h[p];
            h[p] = t;
            i = p;
        }
    } else if (better(&x, &h[0])) {
        h[0] = x;
        heap_sift_down(h, *n, 0);
    }
}

static int cmp_hits(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

size_t search_graph_bytes(const struct vset *vs)
{
    return vs->ix ? fx_graph_bytes(vs->ix) : 0;
}

int search_has_graph(const struct vset *vs)
{
    return vs->ix != NULL;
}

void search_test_inject(const struct vset *vs, int64_t row)
{
    if (vs->ix != NULL)
        fx_test_inject_row(vs->ix, row);
}

static void exact_scan(const struct vset *vs, const uint64_t *bits, size_t words,
                       const float *query, size_t k, struct hit *hits, size_t *nh_out,
                       size_t *scanned_out)
{
    size_t nh = 0, scanned = 0;
    for (size_t w = 0; w < words; w++) {
        uint64_t word = bits[w];
        while (word != 0) {
            size_t r = w * 64 + (size_t)__builtin_ctzll(word);
            const float *v = vs->vec + r * vs->dim;
            struct hit h;
            word &= word - 1;
            h.key = vs->metric == STW_METRIC_L2 ? -dist_l2sq(query, v, vs->dim)
                                                : dist_dot(query, v, vs->dim);
            h.row = (uint32_t)r;
            heap_push(hits, &nh, k, h);
            scanned++;
        }
    }
    qsort(hits, nh, sizeof *hits, cmp_hits);
    *nh_out = nh;
    *scanned_out = scanned;
}

/* The quantised scan: every allowed row scored with its 8-bit codes against an 8-bit query
 * (AVX-512 VNNI: a quarter of the float scan's memory traffic, 64 products per instruction),
 * then the candidates rescore_pool picks re-scored exactly in float, of which the best k are
 * returned with exact scores (the 1-bit pass's candidates: up to QUANT_CANDIDATES(k) of them
 * straight to the float pass). Complete like the exact scan (every allowed row is scored); the
 * first pass may misorder rows whose scores differ by less than its error (~1e-3 for unit
 * vectors), which the re-scored candidates absorb (docs/search.md gives the measured recall).
 * The query's codes are offset by 128 for vpdpbusd (unsigned x signed):
 * sum((cq + 128) * cx) - 128 * sum(cx) = sum(cq * cx). */
#define QUANT_CANDIDATES(k) ((k) * 4 > 64 ? (k) * 4 : 64)
/* The 1-bit estimate's error falls as 1 / sqrt(dim): below this dimension it is not used */
#define BIN_MIN_DIM 128
/* A row stays a candidate unless its estimate plus BIN_Z of the measured errors (scaled by the
 * norms) is below the k-th best estimate minus theirs */
#define BIN_Z 5.0f
#define BIN_MAX_KEPT_SHARE 16 /* more than 1/16 of the rows kept: the 8-bit pass instead */
#define BIN_SAMPLE_QUERIES 32
#define BIN_SAMPLE_ROWS    1024
#define QUANT_BATCH 512
#define QUANT_AHEAD 16

/* The query as 8-bit codes offset by 128 into qc (dim bytes), the way build_codes made the
 * rows', centred (q - m) if centre. The 8-bit pass centres for l2 only (l2 compares centred
 * rows with the centred query; ip and cosine keep the query as it is: q.(x - m) ranks rows as
 * q.x does); the 1-bit pass always (see quant_scan). Returns its scale. */
static float quant_query_c(const struct vset *vs, const float *query, int centre, uint8_t *qc)
{
    size_t d = vs->dim;
    float m = 0, qscale, inv;

    for (size_t i = 0; i < d; i++) {
        float v = centre ? query[i] - vs->qmean[i] : query[i];
        m = fabsf(v) > m ? fabsf(v) : m;
    }
    qscale = m > 0 ? m / 127.0f : 1.0f;
    inv = 1.0f / qscale;
    for (size_t i = 0; i < d; i++) {
        long q = lrintf((centre ? query[i] - vs->qmean[i] : query[i]) * inv);
        q = q > 127 ? 127 : q < -127 ? -127 : q;
        qc[i] = (uint8_t)(q + 128);
    }
    return qscale;
}

static float quant_query(const struct vset *vs, const float *query, uint8_t *qc)
{
    return quant_query_c(vs, query, vs->metric == STW_METRIC_L2, qc);
}

/* The 8-bit key of record p (see quant_scan) */
static inline float sq8_key(const struct vset *vs, const uint8_t *qc, float qscale, size_t p)
{
    return fx_qrec_key(vs->qrows + p * vs->qstride, vs->dim, qc, qscale,
                       vs->metric == STW_METRIC_L2);
}

/* The 1-bit estimate of q.x' for record p; qsum = sum(qc - 128) over the dimensions. */
static inline float bin_ip(const struct vset *vs, const uint8_t *qc, float qscale, int64_t qsum,
                           size_t p, struct bin_tail *bt)
{
    size_t bwords = (vs->dim + 63) / 64;
    const uint8_t *rec = vs->brows + p * vs->bstride;
    const uint64_t *sign = (const uint64_t *)rec; /* records are 64-byte aligned */

    memcpy(bt, rec + bwords * 8, sizeof *bt);
    return (float)(2 * (int64_t)dist_sum_u8_masked(qc, sign, bwords) - 256 * (int64_t)bt->pop -
                   qsum) *
           qscale * bt->f;
}

/* Whether a scan of `allowed` rows takes the 1-bit pass (before it knows whether its bounds
 * separate: quant_scan may still give way to the 8-bit pass). */
static int one_bit_applies(const struct vset *vs, size_t bin_min_rows, size_t allowed)
{
    return vs->brows != NULL && vs->bsigma > 0 && vs->dim >= BIN_MIN_DIM && bin_min_rows > 0 &&
           allowed >= bin_min_rows;
}

/* |q - m|: the 1-bit pass estimates (q - m).x' (see quant_scan) */
static float centred_norm(const struct vset *vs, const float *query)
{
    double s = 0;
    for (size_t i = 0; i < vs->dim; i++) {
        double v = query[i] - vs->qmean[i];
        s += v * v;
    }
    return (float)sqrt(s);
}

/* Measures vs->bsigma: rows of the version as queries against other rows, the 1-bit estimate
 * of (q - m).x' against its value in float, the error relative to |q - m| |x'|: its RMS, or
 * the largest error seen / BIN_Z if that is more, so the bound covers every sampled pair.
 * Queries are assumed to look like the rows they are compared with (same embedding model);
 * docs/search.md gives the measured values. */
static void bin_calibrate(struct vset *vs)
{
    size_t n = vs->n, d = vs->dim, bwords = (d + 63) / 64, pairs = 0;
    uint8_t *qc = calloc(bwords * 64, 1);
    float *qv = malloc(d * sizeof *qv), *xv = malloc(d * sizeof *xv);
    double sq = 0, worst = 0;

    vs->bsigma = 0;
    if (qc == NULL || qv == NULL || xv == NULL || vs->brows == NULL || d < BIN_MIN_DIM ||
        n < 64) {
        free(qc);
        free(qv);
        free(xv);
        return;
    }
    for (size_t a = 0; a < BIN_SAMPLE_QUERIES; a++) {
        size_t qr = (a * 2654435761u + 17) % n;
        float qscale = quant_query_c(vs, vs->vec + qr * d, 1, qc), qn;
        int64_t qsum = 0;
        for (size_t i = 0; i < d; i++) {
            qv[i] = vs->vec[qr * d + i] - vs->qmean[i];
            qsum += (int64_t)qc[i] - 128;
        }
        qn = sqrtf(dist_dot(qv, qv, d));
        for (size_t b = 0; b < BIN_SAMPLE_ROWS; b++) {
            size_t r = (b * 40503u + a * 977u + 1) % n;
            struct bin_tail bt;
            float est, truth;
            if (r == qr)
                continue;
            est = bin_ip(vs, qc, qscale, qsum, vs->qpos[r], &bt);
            for (size_t i = 0; i < d; i++)
                xv[i] = vs->vec[r * d + i] - vs->qmean[i];
            truth = dist_dot(qv, xv, d); /* (q - m).(x - m) */
            if (qn > 0 && bt.norm > 0) {
                double e = (est - truth) / ((double)qn * bt.norm);
                sq += e * e;
                worst = fabs(e) > worst ? fabs(e) : worst;
                pairs++;
            }
        }
    }
    if (pairs > 0) {
        double rms = sqrt(sq / (double)pairs);
        vs->bsigma = (float)(worst / BIN_Z > rms ? worst / BIN_Z : rms);
    }
    if (!isfinite(vs->bsigma))
        vs->bsigma = 0; /* no 1-bit pass */
    free(qc);
    free(qv);
    free(xv);
}

/* Rows re-scored in float after an 8-bit pass (sq8, cells): the best by 8-bit key, as many as
 * the walk re-scores (RESCORE_MIN), and more where the 8-bit keys are too coarse to rank them:
 * every row whose key is within 2 BIN_Z sigma of the k-th best, sigma the 8-bit key's
 * standard error (its rounding errors are independent and uniform: sigma^2 = (xs^2 |q|^2 +
 * qs^2 |x'|^2) / 12), out of the best RESCORE_POOL. (Clustered 16-d l2 data in test_planner
 * needs it: the best 30 alone gave recall 0.72. sq8 re-scored its best max(4k, 64) until
 * session 9.) */
#define RESCORE_MIN(k)  ((k) * 3 > 24 ? (k) * 3 : 24)
#define RESCORE_POOL(k) ((k) * 16 > 256 ? (k) * 16 : 256)

/* The t-th best key (1-based, t <= n) of h[0 .. n); reorders h (Hoare's selection). */
static float kth_best(struct hit *h, size_t n, size_t t)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, want = (ptrdiff_t)t - 1;

    while (lo < hi) {
        float pivot = h[lo + (hi - lo) / 2].key;
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (h[i].key > pivot)
                i++;
            while (h[j].key < pivot)
                j--;
            if (i <= j) {
                struct hit x = h[i];
                h[i++] = h[j];
                h[j--] = x;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break; /* between them: keys equal to the pivot */
    }
    return h[want].key;
}

/* The best `keep` rows by key, gathered in a buffer of 2 keep: a row enters when it beats thr;
 * a full buffer is cut back to its best keep and thr rises to the keep-th key. A row costs a
 * comparison, a cut O(keep): cheaper than a heap of the best keep (at 256, its sifts cost the
 * 1 % band of 200k ~30 us, session 9). The buffer then holds at least the best keep rows. */
struct pool {
    struct hit *h; /* 2 keep */
    size_t n, keep;
    float thr;
};

static void pool_cut(struct pool *p)
{
    float kth = kth_best(p->h, p->n, p->keep);
    size_t greater = 0, m = 0;

    for (size_t i = 0; i < p->n; i++)
        greater += p->h[i].key > kth;
    for (size_t i = 0, eq = 0; i < p->n; i++)
        if (p->h[i].key > kth || (p->h[i].key == kth && eq++ < p->keep - greater))
            p->h[m++] = p->h[i];
    p->n = m;
    p->thr = kth;
}

static inline void pool_push(struct pool *p, struct hit x)
{
    if (!(x.key > p->thr))
        return;
    p->h[p->n++] = x;
    if (p->n == 2 * p->keep)
        pool_cut(p);
}

/* The 8-bit pass over every record set in bits (record order) into the heap cand (its best
 * ncand); returns the rows scored. */
static size_t sq8_all(const struct vset *vs, const uint64_t *bits, size_t words,
                      const uint8_t *qc, float qscale, struct hit *cand, size_t *nc, size_t ncand)
{
    size_t scanned = 0;

    /* Allowed rows may still be scattered, a jump the hardware prefetcher cannot guess:
     * records are taken QUANT_BATCH at a time and each one fetched QUANT_AHEAD records
     * before it is scored (120 -> ~30 ns a row at 10 % of 200k x 384, scattered). */
    for (size_t w = 0; w < words;) {
        uint32_t batch[QUANT_BATCH];
        size_t nb = 0;
        for (; w < words && nb + 64 <= QUANT_BATCH; w++) {
            uint64_t word = bits[w];
            while (word != 0) {
                batch[nb++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(word));
                word &= word - 1;
            }
        }
        for (size_t i = 0; i < nb && i < QUANT_AHEAD; i++)
            dist_prefetch(vs->qrows + (size_t)batch[i] * vs->qstride, vs->qstride, 1);
        for (size_t i = 0; i < nb; i++) {
            struct hit h;
            if (i + QUANT_AHEAD < nb)
                dist_prefetch(vs->qrows + (size_t)batch[i + QUANT_AHEAD] * vs->qstride,
                              vs->qstride, 1);
            h.key = sq8_key(vs, qc, qscale, batch[i]);
            h.row = vs->qperm[batch[i]];
            heap_push(cand, nc, ncand, h);
        }
        scanned += nb;
    }
    return scanned;
}

/* The best k of the nc candidate rows re-scored in float into hits, best first; their count */
static size_t rescore(const struct vset *vs, const float *query, const struct hit *cand,
                      size_t nc, size_t k, struct hit *hits)
{
    size_t d = vs->dim, nh = 0;
    int l2 = vs->metric == STW_METRIC_L2;

    for (size_t i = 0; i < nc; i++) {
        const float *v = vs->vec + (size_t)cand[i].row * d;
        /* scattered float rows, 24 cache lines each at d = 384: two in flight */
        for (size_t j = i == 0 ? 0 : i + 2; j <= i + 2 && j < nc; j++)
            dist_prefetch(vs->vec + (size_t)cand[j].row * d, d * sizeof(float), 1);
        struct hit h = {l2 ? -dist_l2sq(query, v, d) : dist_dot(query, v, d), cand[i].row};
        heap_push(hits, &nh, k, h);
    }
    qsort(hits, nh, sizeof *hits, cmp_hits);
    return nh;
}

/* The pool's rows that can be in the top k (see RESCORE_MIN) re-scored in float into hits,
 * best first; their count. qscale: the 8-bit query's scale. Reorders pool. */
static size_t rescore_pool(const struct vset *vs, const float *query, float qscale,
                           struct hit *pool, size_t np, size_t k, struct hit *hits)
{
    int l2 = vs->metric == STW_METRIC_L2;
    size_t m = np;
    float qn2 = 0;

    for (size_t i = 0; i < vs->dim; i++) { /* |q| in the keys' frame (centred for l2) */
        float v = l2 ? query[i] - vs->qmean[i] : query[i];
        qn2 += v * v;
    }
    if (np > RESCORE_MIN(k)) {
        float sigma = sqrtf((vs->qscale_max * vs->qscale_max * qn2 +
                             qscale * qscale * vs->qnorm_max * vs->qnorm_max) / 12.0f) *
                      (l2 ? 2.0f : 1.0f);
        float floor = kth_best(pool, np, k) - 2 * BIN_Z * sigma;
        float least = kth_best(pool, np, RESCORE_MIN(k));
        if (least < floor)
            floor = least;
        m = 0;
        for (size_t i = 0; i < np; i++)
            if (pool[i].key >= floor)
                pool[m++] = pool[i];
    }
    return rescore(vs, query, pool, m, k, hits);
}

/* The cell scan: the allowed rows of the cells that can hold a top-k row, on their 8-bit
 * records, then re-scored in float as rescore_pool says.
 *
 * A cell j can hold no row whose key reaches its bound ub_j: for ip, q.x' = q.c_j + q.(x' -
 * c_j) <= q.c_j + |q| r_j (Cauchy-Schwarz, c_j its mean and r_j its radius, both measured
 * from its rows at load); for l2 (key |q'|^2 - |q' - x'|^2) |q' - x'| >= |q' - c_j| - r_j.
 * The scan keeps tau, the k-th best of the scored rows' 8-bit keys less the 8-bit key's
 * largest error e (so the true k-th best allowed key is at least tau), and skips every cell
 * whose bound is below tau: those cells cannot hold a row of the true top k. The cells with
 * the best bounds go first, so tau is high early.
 *
 * e, from x' = xs x~ + dx and q = qs q~ + dq with |dx_i| <= xs / 2, |dq_i| <= qs / 2:
 * |q.x' - qs xs q~.x~| <= xs / 2 |q|_1 + qs / 2 |x'|_1 + 3 d qs xs / 4, with the version's
 * largest xs and |x'|_1 (twice that for l2's key). bits: the allow-set in record order. */
#define CELL_FIRST 4
/* The planner's cell scan needs cells_share at most this: at 200k x 384 the bounds' pass
 * (2,000 cells) takes ~25 us and a read row ~50 ns, so reading 1 % of the rows (~0.12 ms)
 * already costs what the walk does */
#define CELL_MAX_SHARE 0.01f

struct cell_ctx {
    const struct vset *vs;
    const uint64_t *bits;
    const uint8_t *qc;
    float qscale, e, tau;
    struct pool cand;  /* the best by key */
    struct hit *low;   /* heap: the lower bounds */
    size_t nlow, k, scanned;
};

static void cell_visit(struct cell_ctx *c, size_t j)
{
    const struct vset *vs = c->vs;
    const uint32_t *start = vs->coff + j * vs->ngroups, *end = start + vs->ngroups;
    size_t g = 0, p = start[0];
    uint32_t batch[QUANT_BATCH];

    /* the cell's allowed records, a batch at a time: all requested, then scored (its runs
     * are short, and records outside the allow-set are never read) */
    while (g < vs->ngroups) {
        size_t nb = 0;
        while (g < vs->ngroups && nb < QUANT_BATCH) {
            if (p >= end[g]) {
                if (++g < vs->ngroups)
                    p = start[g];
                continue;
            }
            if (c->bits[p >> 6] & (1ull << (p & 63)))
                batch[nb++] = (uint32_t)p;
            p++;
        }
        for (size_t i = 0; i < nb; i++)
            dist_prefetch(vs->qrows + (size_t)batch[i] * vs->qstride, vs->qstride, 1);
        for (size_t i = 0; i < nb; i++) {
            struct hit h = {sq8_key(vs, c->qc, c->qscale, batch[i]), vs->qperm[batch[i]]};
            pool_push(&c->cand, h);
            if (c->nlow < c->k || h.key - c->e > c->tau) {
                h.key -= c->e;
                heap_push(c->low, &c->nlow, c->k, h);
                if (c->nlow == c->k)
                    c->tau = c->low[0].key;
            }
        }
        c->scanned += nb;
    }
}

static int cell_scan(const struct vset *vs, const uint64_t *bits, const float *query, size_t k,
                     struct hit *hits, size_t *nh_out, size_t *scanned_out)
{
    size_t d = vs->dim, nc = vs->ncells, nf = 0;
    int l2 = vs->metric == STW_METRIC_L2;
    struct cell_ctx c = {vs, bits, NULL, 0, 0, -INFINITY, {NULL, 0, RESCORE_POOL(k), -INFINITY},
                         NULL, 0, k, 0};
    uint8_t *qc = malloc(d ? d : 1);
    float *qv = malloc((d ? d : 1) * sizeof *qv), *ub = malloc(nc * sizeof *ub);
    float qn2, qn, ql1 = 0;
    uint32_t first[CELL_FIRST];

    c.cand.h = malloc(2 * RESCORE_POOL(k) * sizeof *c.cand.h);
    c.low = malloc(k * sizeof *c.low);
    if (qc == NULL || qv == NULL || ub == NULL || c.cand.h == NULL || c.low == NULL) {
        free(qc);
        free(qv);
        free(ub);
        free(c.cand.h);
        free(c.low);
        return 0;
    }
    c.qc = qc;
    c.qscale = quant_query(vs, query, qc);
    for (size_t i = 0; i < d; i++) { /* the query in the keys' frame (centred for l2) */
        qv[i] = l2 ? query[i] - vs->qmean[i] : query[i];
        ql1 += fabsf(qv[i]);
    }
    qn2 = dist_dot(qv, qv, d);
    qn = sqrtf(qn2);
    c.e = 0.5f * vs->qscale_max * ql1 + 0.5f * c.qscale * vs->ql1_max +
          0.75f * (float)d * c.qscale * vs->qscale_max;
    c.e = (l2 ? 2.0f : 1.0f) * c.e * 1.001f + 1e-5f * (1.0f + qn2); /* and float's rounding */
    for (size_t j = 0; j < nc; j++) {
        const int8_t *code = vs->ccodes + j * vs->cstride;
        /* q.c_j from the 8-bit codes, and that estimate's error (as e, for this mean) */
        float ip = (float)(dist_dot_u8s8(qc, code, d) - 128 * vs->csum[j]) * c.qscale *
                   vs->cscale[j];
        float ej = 0.5f * vs->cscale[j] * ql1 + 0.5f * c.qscale * vs->cl1[j] +
                   0.75f * (float)d * c.qscale * vs->cscale[j];
        float u;
        if (j + 8 < nc)
            dist_prefetch(code + 8 * vs->cstride, d, 1);
        ej = ej * 1.001f + 1e-5f * (1.0f + qn * sqrtf(vs->csq[j]));
        if (l2) { /* |q' - c_j|^2 = |q'|^2 - 2 q'.c_j + |c_j|^2, at least */
            float lo = qn2 - 2.0f * (ip + ej) + vs->csq[j];
            float gap = sqrtf(lo > 0 ? lo : 0) * (1.0f - 1e-5f) - vs->crad[j];
            gap = gap > 0 ? gap : 0;
            u = qn2 - gap * gap;
        } else
            u = ip + ej + qn * vs->crad[j];
        ub[j] = u + 1e-5f * (1.0f + fabsf(u));
        /* the CELL_FIRST best bounds, best first */
        size_t at = nf < CELL_FIRST ? nf++ : CELL_FIRST;
        while (at > 0 && ub[first[at - 1]] < ub[j]) {
            if (at < CELL_FIRST)
                first[at] = first[at - 1];
            at--;
        }
        if (at < CELL_FIRST)
            first[at] = (uint32_t)j;
    }
    /* (a cell is skipped only when its bound is below tau: a bound that is not a number, from
     * a query whose norm overflows, visits the cell) */
    for (size_t i = 0; i < nf; i++) {
        if (c.nlow < k || !(ub[first[i]] < c.tau))
            cell_visit(&c, first[i]);
        ub[first[i]] = -INFINITY; /* visited, or cannot matter */
    }
    for (size_t j = 0; j < nc; j++)
        if (ub[j] != -INFINITY && (c.nlow < k || !(ub[j] < c.tau)))
            cell_visit(&c, j);
    *nh_out = rescore_pool(vs, query, c.qscale, c.cand.h, c.cand.n, k, hits);
    *scanned_out = c.scanned;
    free(qc);
    free(qv);
    free(ub);
    free(c.cand.h);
    free(c.low);
    return 1;
}

/* Measures vs->cells_share: CELL_SAMPLE_QUERIES rows of the version as queries (k = 10, every
 * row allowed), the mean share of the rows the cell scan read. On the benchmark's clustered
 * rows it is ~0.3 % (a query's own cluster); on rows without tight clusters the bounds prune
 * little (40 % in docs/search.md's example) and the graph or the scans are cheaper. Queries
 * are assumed to look like the rows, as in bin_calibrate. */
#define CELL_SAMPLE_QUERIES 32

static void cells_calibrate(struct vset *vs)
{
    size_t n = vs->n, words = (n + 63) / 64, total = 0, runs = 0;
    uint64_t *all;
    struct hit hits[10];

    vs->cells_share = 1;
    if (vs->ncells == 0 || n == 0 || vs->qrows == NULL ||
        (all = malloc(words * sizeof *all)) == NULL)
        return;
    memset(all, 0xff, words * sizeof *all);
    if (n % 64 != 0)
        all[words - 1] = (1ull << (n % 64)) - 1;
    for (size_t a = 0; a < CELL_SAMPLE_QUERIES; a++) {
        size_t r = (a * 2654435761u + 17) % n, nh = 0, scanned = 0;
        if (cell_scan(vs, all, vs->vec + r * vs->dim, 10, hits, &nh, &scanned)) {
            total += scanned;
            runs++;
        }
    }
    if (runs > 0)
        vs->cells_share = (float)((double)total / ((double)runs * (double)n));
    free(all);
}

/* bits: the allow-set in record order (allow_set_in_record_order) */
static int quant_scan(const struct vset *vs, const uint64_t *bits, size_t words, size_t allowed,
                      size_t bin_min_rows, const float *query, size_t k, struct hit *hits,
                      size_t *nh_out, size_t *scanned_out, int *one_bit)
{
    size_t d = vs->dim, ncand = QUANT_CANDIDATES(k), nc = 0, nh = 0, scanned = 0;
    size_t bwords = (d + 63) / 64, nb1 = 0, nlow = 0;
    uint8_t *qc = malloc(d ? d : 1);
    struct hit *cand = calloc(ncand, sizeof *cand);
    int use_bin = one_bit_applies(vs, bin_min_rows, allowed);
    struct hit *low = use_bin ? malloc(k * sizeof *low) : NULL;
    float qscale;
    int l2 = vs->metric == STW_METRIC_L2;

    if (qc == NULL || cand == NULL || vs->qrows == NULL || (use_bin && low == NULL)) {
        free(qc);
        free(cand);
        free(low);
        return 0;
    }
    qscale = quant_query(vs, query, qc);
    if (use_bin) {
        /* A large scan reads one 64-byte line of sign bits a row instead of seven of 8-bit
         * codes. Each row's estimate comes with an error bound, BIN_Z times the version's
         * measured error scaled by |q| |x'| (twice that for l2's key). The first pass keeps
         * every row's upper bound and the k best lower bounds; the rows whose upper bound
         * reaches the k-th best lower bound are the candidates (~20 of 20,000 at 10 % of
         * 200k), scored in float directly when they are few, else first in 8 bits. */
        int64_t qsum = 0;
        float zq = BIN_Z * vs->bsigma * centred_norm(vs, query) * (l2 ? 2.0f : 1.0f);
        float tau = -INFINITY, *ub = malloc((allowed ? allowed : 1) * sizeof *ub), qscale_c;
        uint32_t *up = malloc((allowed ? allowed : 1) * sizeof *up); /* ub[i]'s record */
        uint8_t *qcc = calloc(bwords * 64, 1); /* the centred query, padded to whole words */
        size_t nub = 0;
        if (ub == NULL || up == NULL || qcc == NULL) {
            free(ub);
            free(up);
            free(qcc);
            free(qc);
            free(cand);
            free(low);
            return 0;
        }
        qscale_c = quant_query_c(vs, query, 1, qcc);
        for (size_t i = 0; i < d; i++)
            qsum += (int64_t)qcc[i] - 128;
        for (size_t w = 0; w < words; w++) {
            for (uint64_t word = bits[w]; word != 0 && nub < allowed; word &= word - 1) {
                size_t p = w * 64 + (size_t)__builtin_ctzll(word);
                struct bin_tail bt;
                /* the estimated (q - m).x', and the exact term (struct bin_tail) */
                float ipc = bin_ip(vs, qcc, qscale_c, qsum, p, &bt);
                float key = (l2 ? 2.0f * ipc : ipc) + bt.aux, m = zq * bt.norm;
                ub[nub] = key + m;
                up[nub++] = (uint32_t)p;
                if (nlow < k || key - m > tau) {
                    struct hit lo = {key - m, (uint32_t)p};
                    heap_push(low, &nlow, k, lo);
                    if (nlow == k)
                        tau = low[0].key;
                }
            }
        }
        size_t nkeep = 0; /* the kept records, compacted to up[0 .. nkeep) in address order */
        for (size_t i = 0; i < nub; i++)
            if (ub[i] >= tau)
                up[nkeep++] = up[i];
        /* Where the bounds do not separate (the allowed rows all far from the query and close
         * to each other: a third of 10,000 rows kept at 1 % of 1M), the 8-bit pass over
         * everything in address order is cheaper than over the kept rows at random. */
        /* (and where the bounds are not numbers: rows near FLT_MAX make them inf - inf) */
        if (nkeep > nub / BIN_MAX_KEPT_SHARE || !isfinite(tau) || nkeep < (k < nub ? k : nub))
            use_bin = 0;
        for (size_t i = 0; use_bin && i < nkeep; i++) {
            size_t p = up[i];
            if (nb1 < ncand) { /* room: straight to the float pass */
                cand[nc].key = 0; /* (re-scored in float below) */
                cand[nc++].row = vs->qperm[p];
                nb1++;
                continue;
            }
            if (nb1 == ncand) { /* more than that: the 8-bit pass, as sq8 does */
                for (size_t c = 0; c < nc; c++) {
                    struct hit h = {sq8_key(vs, qc, qscale, vs->qpos[cand[c].row]),
                                    cand[c].row};
                    cand[c] = h;
                }
                struct hit *tmp = cand; /* re-heap them under the 8-bit keys */
                size_t n0 = nc;
                nc = 0;
                for (size_t c = 0; c < n0; c++)
                    heap_push(tmp, &nc, ncand, tmp[c]);
            }
            struct hit h = {sq8_key(vs, qc, qscale, p), vs->qperm[p]};
            heap_push(cand, &nc, ncand, h);
            nb1++;
        }
        free(ub);
        free(up);
        free(qcc);
        if (use_bin)
            scanned = nub;
    }
    if (!use_bin) {
        /* (its best QUANT_CANDIDATES, a heap: a pool of RESCORE_POOL cost the 1 % band of 200k
         * 0.12 -> 0.15 ms in three alternating pairs; the cells read fewer rows) */
        nc = 0;
        scanned = sq8_all(vs, bits, words, qc, qscale, cand, &nc, ncand);
        nh = rescore_pool(vs, query, qscale, cand, nc, k, hits);
    } else
        nh = rescore(vs, query, cand, nc, k, hits);
    free(qc);
    free(cand);
    free(low);
    *nh_out = nh;
    *scanned_out = scanned;
    *one_bit = use_bin;
    return 1;
}

/* HNSW rungs with a growing ef; 1 if one of them found min(k, allowed) allowed rows. */
#define EF_BASE_ROWS 250000 /* graphs up to this size search at the configured ef */

static int graph_search(const struct vset *vs, const uint64_t *bits, size_t allowed,
                        const struct plan_opts *po, const float *query, size_t k,
                        struct hit *hits, size_t *nh_out, struct plan_out *out, stw_error *err)
{
    size_t target = allowed < k ? allowed : k;
    float *keys = malloc(k * sizeof *keys);
    int64_t *rows = malloc(k * sizeof *rows);
    uint8_t *qc = NULL;
    fx_codes codes, *cp = NULL;
    int ok = 0;
    /* Lucene and Weaviate use ACORN only below a filter share (60 %, 40 %): broad filters do
     * better with the plain filtered walk */
    int two_hop = (double)allowed < po->two_hop_below * (double)vs->n;

    if (keys == NULL || rows == NULL)
        goto done;
    /* the walk scores rows on their 8-bit records when the version has them (448 bytes a
     * row read instead of 1,536), and re-scores its best 3k (at least 24) in float */
    if (vs->walk != NULL && (qc = malloc(vs->dim ? vs->dim : 1)) != NULL) {
        codes.walk = vs->walk;
        codes.qc = qc;
        codes.qscale = quant_query(vs, query, qc);
        codes.l2 = vs->metric == STW_METRIC_L2;
        cp = &codes;
    }
    /* the graph's recall at a fixed ef falls as it grows: ef doubles for every 4x rows above
     * EF_BASE_ROWS (64 at 200k, 128 at 1M: recall 0.969 -> see docs/search.md), up to ef_max */
    size_t ef0 = po->ef;
    for (size_t upto = EF_BASE_ROWS; vs->n > upto && ef0 < po->ef_max; upto *= 4)
        ef0 *= 2;
    if (ef0 > po->ef_max && po->ef_max >= po->ef)
        ef0 = po->ef_max;
    for (size_t ef = ef0; ef > 0; ef *= 2) {
        size_t found = 0, visited = 0, seen = 0, nh = 0;
        int exhausted = 0;
        /* Lucene's rule: the graph may not compute more distances than the exact scan would */
        size_t limit = po->strategy == STW_STRATEGY_HNSW ? 0 : allowed;
        if (fx_search(vs->ix, query, k, ef, bits, limit, keys, rows, &found, &visited, &seen,
                      two_hop, &exhausted, cp, err) != STW_OK)
            goto done;
        out->scanned += seen;
        out->ef = ef;
        for (size_t i = 0; i < found; i++) {
            int64_t r = rows[i];
            /* re-check every row the graph returns against the allow-set (faiss#5504) */
            if (r < 0 || (size_t)r >= vs->n || !(bits[r >> 6] & (1ull << (r & 63)))) {
                out->rejected++;
                continue;
            }
            hits[nh].key = keys[i];
            hits[nh].row = (uint32_t)r;
            nh++;
        }
        if (!exhausted && nh >= target) {
            qsort(hits, nh, sizeof *hits, cmp_hits);
            *nh_out = nh;
            ok = 1;
            break;
        }
        if (exhausted || ef >= po->ef_max)
            break;
        out->rungs++;
    }
done:
    free(keys);
    free(rows);
    free(qc);
    return ok;
}

/* The scans read a copy of the allow-set (record order, cached): their answers are re-checked
 * against the allow-set itself, as the graph's are. Returns the hits kept, in order. */
static size_t recheck(const struct vset *vs, const uint64_t *bits, struct hit *hits, size_t nh,
                      struct plan_out *out)
{
    size_t kept = 0;

    for (size_t i = 0; i < nh; i++) {
        uint32_t r = hits[i].row;
        if (r < vs->n && (bits[r >> 6] & (1ull << (r & 63))))
            hits[kept++] = hits[i];
        else
            out->rejected++;
    }
    return kept;
}

stw_code search_version(const struct vset *vs, const struct access *acc,
                        const struct plan_opts *po, const float *query, size_t k,
                        struct hit *hits_out, size_t *nhits_out, struct plan_out *out,
                        stw_error *err)
{
    size_t words = (vs->n + 63) / 64, allowed, nh = 0, keylen;
    uint64_t *bits = calloc(words ? words : 1, sizeof *bits);
    int use_graph, scan_one_bit;
    char key[ACACHE_KEY_MAX]; /* the access's allow-set cache key */

    memset(out, 0, sizeof *out);
    if (bits == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    if (k == 0) { /* (the service asks for k >= 1; the scans' heaps need it) */
        free(bits);
        out->strategy = "exact";
        *nhits_out = 0;
        return STW_OK;
    }
    keylen = access_key(acc, key, sizeof key);
    allowed = allow_set_cached(vs, acc, key, keylen, bits);
    out->allowed = allowed;
    out->strategy = "exact";
    if (allowed == 0) {
        free(bits);
        *nhits_out = 0;
        return STW_OK;
    }
    /* A version with cells that prune (cells_calibrate): a large allow-set takes the cell
     * scan (exact bounds decide which cells it reads; see cell_scan). */
    if (vs->ncells > 0 && vs->qrows != NULL &&
        (po->strategy == STW_STRATEGY_CELLS ||
         (po->strategy == STW_STRATEGY_AUTO && po->cells_min_share > 0 &&
          vs->cells_share <= CELL_MAX_SHARE &&
          (double)allowed >= po->cells_min_share * (double)vs->n))) {
        uint64_t *pbits = calloc(words ? words : 1, sizeof *pbits);
        size_t scanned = 0;
        if (pbits != NULL) {
            allow_set_in_record_order(vs, key, keylen, bits, pbits);
            if (cell_scan(vs, pbits, query, k, hits_out, &nh, &scanned)) {
                out->strategy = "cells";
                out->scanned = scanned;
                nh = recheck(vs, bits, hits_out, nh, out);
                free(pbits);
                free(bits);
                *nhits_out = nh;
                return STW_OK;
            }
            free(pbits);
        }
    }
    /* The planner: the allow-set's size is exact (a popcount), so the choice never rests on an
     * estimate. Small or sparse allow-sets are scanned; large ones use the graph. */
    /* With the 1-bit pass a scan costs ~13 ns a row (1.3 ms at 100,000 rows), less than the
     * graph's walk on a large version (1.8-2.0 ms at 10 % of 1M); at 200k the graph is the
     * cheaper above 25,000 rows (docs/search.md) */
    scan_one_bit = po->strategy == STW_STRATEGY_AUTO && po->quant_min_rows > 0 &&
                   allowed >= po->quant_min_rows && one_bit_applies(vs, po->bin_min_rows, allowed);
    use_graph = vs->ix != NULL && po->strategy != STW_STRATEGY_EXACT &&
                (po->strategy == STW_STRATEGY_HNSW ||
                 (allowed > po->exact_max_rows &&
                  (double)allowed >= po->min_selectivity * (double)vs->n &&
                  !(scan_one_bit && (double)allowed <= po->scan_max_share * (double)vs->n)));
    if (use_graph) {
        if (graph_search(vs, bits, allowed, po, query, k, hits_out, &nh, out, err)) {
            out->strategy = "hnsw";
            free(bits);
            *nhits_out = nh;
            return STW_OK;
        }
        out->strategy = "hnsw+exact"; /* the graph could not fill k: exact fallback */
    }
    {
        size_t scanned = 0;
        int one_bit = 0;
        uint64_t *pbits = NULL;
        /* auto only: a forced exact strategy stays exact (the oracle ranks its answers). The
         * quantised scan reads its records in address order: they are in label order (see
         * struct vset), and an allow-set made by labels is a few runs of adjacent records. */
        if (po->strategy == STW_STRATEGY_AUTO && po->quant_min_rows > 0 &&
            allowed >= po->quant_min_rows && vs->qrows != NULL &&
            (pbits = calloc(words ? words : 1, sizeof *pbits)) != NULL) {
            allow_set_in_record_order(vs, key, keylen, bits, pbits);
        }
        if (pbits != NULL && quant_scan(vs, pbits, words, allowed, po->bin_min_rows, query, k,
                                        hits_out, &nh, &scanned, &one_bit)) {
            out->strategy = one_bit ? (use_graph ? "hnsw+sq1" : "sq1")
                                    : (use_graph ? "hnsw+sq8" : "sq8");
            nh = recheck(vs, bits, hits_out, nh, out);
        } else
            exact_scan(vs, bits, words, query, k, hits_out, &nh, &scanned);
        free(pbits);
        out->scanned += scanned;
    }
    free(bits);
    *nhits_out = nh;
    return STW_OK;
}
