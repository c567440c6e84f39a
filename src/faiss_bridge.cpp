// faiss_bridge.cpp - the only C++ file: FAISS HNSW build/save/load and our filtered search.
//
// Why it is shaped this way (shared/notes/platform.md, sections 1, 2 and 11):
//  - Debian's libfaiss 1.7.3 computes distances with scalar code; an IndexFlat subclass whose
//    distance computer uses AVX-512/AVX2 FMA, installed as the HNSW storage, makes FAISS's own
//    graph build ~3.5x faster and still saves as a standard IndexHNSWFlat.
//  - FAISS 1.7.3 sizes the HNSW search queue from the index's member efSearch (per-query ef
//    cannot raise it, and changing the member races), its bounded queue under-fills narrow
//    filters, and search_bounded_queue=false ignores the selector (faiss#5504). So the level-0
//    search below is ours: read-only over the graph arrays, per-query ef, the allow bitmap
//    tested inline, allowed hits collected until ef of them are found (hnswlib's filtered
//    rule), and a visit budget after which the caller falls back to an exact scan.
// No exception leaves this file: every extern "C" function catches and returns an stw_code.
#include "faiss_bridge.h"
#include "distance.h"
#include "util.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_io.h>


#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <queue>
#include <vector>

namespace {


using idx_t = faiss::Index::idx_t;

// Distances for FAISS's graph code. FAISS minimises, and wraps IP storage in a negating
// computer itself during build, so operator() returns the raw metric value here.
template <bool IP> struct SimdDis : faiss::DistanceComputer {
    const float *b;
    size_t d;
    const float *q = nullptr;
    SimdDis(const float *base, size_t dim) : b(base), d(dim) {}
    void set_query(const float *x) override { q = x; }
    float operator()(idx_t i) override
    {
        return IP ? dist_dot(q, b + i * d, d) : dist_l2sq(q, b + i * d, d);
    }
    float symmetric_dis(idx_t i, idx_t j) override
    {
        return IP ? dist_dot(b + i * d, b + j * d, d) : dist_l2sq(b + i * d, b + j * d, d);
    }
};

// An IndexFlat whose distance computer is SIMD; serialises as a plain IndexFlat.
struct SimdFlat : faiss::IndexFlat {
    SimdFlat(idx_t dim, faiss::MetricType m) : faiss::IndexFlat(dim, m) {}
    faiss::DistanceComputer *get_distance_computer() const override
    {
        if (metric_type == faiss::METRIC_INNER_PRODUCT)
            return new SimdDis<true>(get_xb(), d);
        return new SimdDis<false>(get_xb(), d);
    }
};

// Move the vectors of h's IndexFlat storage into a SimdFlat (no copy).
void use_simd_storage(faiss::IndexHNSW *h)
{
    auto *old = dynamic_cast<faiss::IndexFlat *>(h->storage);
    FAISS_THROW_IF_NOT_MSG(old, "HNSW storage is not an IndexFlat");
    auto *s = new SimdFlat(old->d, old->metric_type);
    s->codes.swap(old->codes);
    s->ntotal = old->ntotal;
    if (h->own_fields)
        delete old;
    h->storage = s;
    h->own_fields = true;
}

// Per-thread visited marks, reused across queries (an epoch counter avoids clearing; one byte
// a row, as FAISS's VisitedTable: 1 MB at 1M rows stays in L2 where 4 MB did not, cleared
// once every 255 queries).
struct Visited {
    std::vector<uint8_t> mark;
    uint8_t epoch = 0;
    void reset(size_t n)
    {
        if (mark.size() < n)
            mark.assign(n, 0), epoch = 0;
        if (++epoch == 0) {
            std::fill(mark.begin(), mark.end(), 0);
            epoch = 1;
        }
    }
    bool test_set(size_t i)
    {
        if (mark[i] == epoch)
            return true;
        mark[i] = epoch;
        return false;
    }
};

thread_local Visited tl_visited;
thread_local std::vector<int64_t> tl_batch; // the rows one expansion scores
thread_local std::vector<float> tl_dists;  // and their distances

typedef std::pair<float, int64_t> DistId; // distance (smaller is better), row

} // namespace

struct fx_index {
    faiss::IndexHNSWFlat *h = nullptr;
    bool ip = true;
    size_t d = 0;
    int64_t inject_row = -1;
};

static stw_code fail(stw_error *err, const char *what, const char *msg)
{
    return stw_errorf(err, STW_INDEX, "index_error", "faiss %s: %s", what, msg);
}

extern "C" stw_code fx_build(const float *vecs, size_t n, size_t d, int ip, size_t m,
                             size_t ef_construction, fx_index **out, stw_error *err)
{
    fx_index *ix = nullptr;
    try {
        ix = new fx_index();
        ix->ip = ip != 0;
        ix->d = d;
        ix->h = new faiss::IndexHNSWFlat((int)d, (int)m,
                                         ip ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2);
        ix->h->hnsw.efConstruction = (int)ef_construction;
        use_simd_storage(ix->h);
        ix->h->add((idx_t)n, vecs);
        *out = ix;
        return STW_OK;
    } catch (const std::exception &e) {
        fx_free(ix);
        return fail(err, "build", e.what());
    } catch (...) {
        fx_free(ix);
        return fail(err, "build", "unknown exception");
    }
}

extern "C" stw_code fx_partition(const float *vecs, size_t n, size_t d, size_t cells,
                                 uint32_t *cell, stw_error *err)
{
    try {
        faiss::ClusteringParameters cp;
        cp.niter = 10;
        cp.max_points_per_centroid = 64; // a sample of 64 rows a cell trains (FAISS's rule)
        faiss::Clustering km((int)d, cells, cp);
        faiss::IndexFlatL2 centres((idx_t)d); // its search is BLAS: fine for n x cells
        km.train((idx_t)n, vecs, centres);
        const size_t batch = 16384;
        std::vector<float> dist(batch);
        std::vector<idx_t> near(batch);
        for (size_t i = 0; i < n; i += batch) {
            size_t m = std::min(batch, n - i);
            centres.search((idx_t)m, vecs + i * d, 1, dist.data(), near.data());
            for (size_t j = 0; j < m; j++)
                cell[i + j] = near[j] < 0 ? 0 : (uint32_t)near[j];
        }
        return STW_OK;
    } catch (const std::exception &e) {
        return fail(err, "partition", e.what());
    } catch (...) {
        return fail(err, "partition", "unknown exception");
    }
}

extern "C" stw_code fx_save(const fx_index *ix, const char *path, stw_error *err)
{
    try {
        faiss::write_index(ix->h, path);
        return STW_OK;
    } catch (const std::exception &e) {
        return stw_errorf(err, STW_UNAVAILABLE, "storage_unavailable", "faiss write %s: %s",
                          path, e.what());
    } catch (...) {
        return fail(err, "write", "unknown exception");
    }
}

extern "C" stw_code fx_load(const char *path, fx_index **out, stw_error *err)
{
    fx_index *ix = nullptr;
    try {
        std::unique_ptr<faiss::Index> idx(faiss::read_index(path));
        auto *h = dynamic_cast<faiss::IndexHNSWFlat *>(idx.get());
        if (h == nullptr)
            return fail(err, "read", "not an IndexHNSWFlat file");
        idx.release();
        ix = new fx_index();
        ix->h = h;
        ix->ip = h->metric_type == faiss::METRIC_INNER_PRODUCT;
        ix->d = (size_t)h->d;
        use_simd_storage(h);
        // the vectors and the upper levels' lists, read at random by every query
        const auto &codes = static_cast<faiss::IndexFlat *>(h->storage)->codes;
        util_huge_advise(codes.data(), codes.size());
        util_huge_advise(h->hnsw.neighbors.data(),
                         h->hnsw.neighbors.size() * sizeof(h->hnsw.neighbors[0]));
        *out = ix;
        return STW_OK;
    } catch (const std::exception &e) {
        fx_free(ix);
        return fail(err, "read", e.what());
    } catch (...) {
        fx_free(ix);
        return fail(err, "read", "unknown exception");
    }
}

extern "C" void fx_free(fx_index *ix)
{
    if (ix == nullptr)
        return;
    delete ix->h;
    delete ix;
}

extern "C" const float *fx_vectors(const fx_index *ix)
{
    auto *flat = static_cast<const faiss::IndexFlat *>(ix->h->storage);
    return flat->get_xb();
}

extern "C" size_t fx_rows(const fx_index *ix)
{
    return (size_t)ix->h->ntotal;
}

extern "C" size_t fx_graph_bytes(const fx_index *ix)
{
    const faiss::HNSW &g = ix->h->hnsw;
    return g.neighbors.size() * sizeof(g.neighbors[0]) + g.levels.size() * sizeof(g.levels[0]) +
           g.offsets.size() * sizeof(g.offsets[0]);
}

extern "C" stw_code fx_search_faiss(const fx_index *ix, const float *query, size_t k,
                                    const uint64_t *allow, float *keys_out, int64_t *rows_out,
                                    size_t *found_out, stw_error *err)
{
    try {
        size_t n = (size_t)ix->h->ntotal;
        std::vector<float> dist(k);
        std::vector<idx_t> ids(k);
        // x86 is little-endian: the uint64 words are IDSelectorBitmap's byte layout
        faiss::IDSelectorBitmap sel((n + 7) / 8, reinterpret_cast<const uint8_t *>(allow));
        faiss::SearchParametersHNSW params;
        params.sel = &sel;
        params.efSearch = ix->h->hnsw.efSearch;
        ix->h->search(1, query, (idx_t)k, dist.data(), ids.data(),
                      allow != nullptr ? &params : nullptr);
        size_t found = 0;
        for (size_t i = 0; i < k; i++) {
            if (ids[i] < 0)
                continue;
            keys_out[found] = ix->ip ? dist[i] : -dist[i];
            rows_out[found] = ids[i];
            found++;
        }
        *found_out = found;
        return STW_OK;
    } catch (const std::exception &e) {
        return fail(err, "search", e.what());
    } catch (...) {
        return fail(err, "search", "unknown exception");
    }
}

extern "C" void fx_set_faiss_ef(fx_index *ix, size_t ef)
{
    ix->h->hnsw.efSearch = (int)ef;
}

extern "C" void fx_set_threads(int n)
{
    omp_set_num_threads(n > 0 ? n : 1);
}

extern "C" void fx_test_inject_row(fx_index *ix, int64_t row)
{
    ix->inject_row = row;
}

// Slots of a row's level-0 neighbour list (2M in FAISS's own graphs)
static size_t level0_slots(const faiss::HNSW &g)
{
    return g.cum_nneighbor_per_level.size() > 1 ? (size_t)g.cum_nneighbor_per_level[1] : 0;
}

struct fx_walk {
    uint8_t *blocks = nullptr;
    size_t bytes = 0, stride = 0; // one block of stride bytes per row
    size_t links = 0;             // offset of the neighbour list in a block
    size_t m0 = 0;                // its slots
};

extern "C" stw_code fx_walk_build(const fx_index *ix, const uint8_t *rows, const uint32_t *pos,
                                  size_t stride, fx_walk **out, stw_error *err)
{
    const faiss::HNSW &g = ix->h->hnsw;
    const size_t n = (size_t)ix->h->ntotal;
    const size_t m0 = level0_slots(g);
    fx_walk *w = nullptr;

    *out = nullptr;
    try {
        w = new fx_walk();
        w->links = stride;
        w->m0 = m0;
        w->stride = (stride + m0 * sizeof(int32_t) + 63) / 64 * 64;
        w->bytes = n * w->stride;
        void *map = util_huge_alloc(w->bytes);
        if (map == nullptr) {
            delete w;
            return stw_errorf(err, STW_NOMEM, NULL, "out of memory for the walk's blocks");
        }
        w->blocks = static_cast<uint8_t *>(map);
        for (size_t r = 0; r < n; r++) {
            uint8_t *b = w->blocks + r * w->stride;
            size_t lb, le;
            std::memcpy(b, rows + (size_t)pos[r] * stride, stride);
            std::memset(b + w->links, 0xff, m0 * sizeof(int32_t)); // -1: no neighbour
            g.neighbor_range((idx_t)r, 0, &lb, &le);
            static_assert(sizeof(g.neighbors[0]) == sizeof(int32_t), "int32 neighbour ids");
            std::memcpy(b + w->links, g.neighbors.data() + lb,
                        std::min(le - lb, m0) * sizeof(int32_t));
        }
        *out = w;
        return STW_OK;
    } catch (const std::exception &e) {
        fx_walk_free(w);
        return fail(err, "walk", e.what());
    } catch (...) {
        fx_walk_free(w);
        return fail(err, "walk", "unknown exception");
    }
}

extern "C" void fx_walk_free(fx_walk *w)
{
    if (w == nullptr)
        return;
    if (w->blocks != nullptr)
        util_huge_free(w->blocks, w->bytes);
    delete w;
}

extern "C" stw_code fx_search(const fx_index *ix, const float *query, size_t k, size_t ef,
                              const uint64_t *allow, size_t visit_limit, float *keys_out,
                              int64_t *rows_out, size_t *found_out, size_t *visited_out,
                              size_t *allowed_seen_out, int two_hop, int *exhausted,
                              const fx_codes *codes, stw_error *err)
{
    if (codes != nullptr && codes->walk == nullptr)
        codes = nullptr; // no blocks: the float walk
    try {
        const faiss::HNSW &g = ix->h->hnsw;
        const float *base = fx_vectors(ix);
        const size_t d = ix->d, n = (size_t)ix->h->ntotal;
        const bool ip = ix->ip;
        size_t visited = 0, allowed_seen = 0;
        auto exact = [&](int64_t i) {
            return ip ? -dist_dot(query, base + (size_t)i * d, d)
                      : dist_l2sq(query, base + (size_t)i * d, d);
        };
        // with codes, row i's 8-bit record and its neighbours are in its walk block
        const fx_walk *walk = codes != nullptr ? codes->walk : nullptr;
        auto record = [&](int64_t i) { return walk->blocks + (size_t)i * walk->stride; };
        // on the 8-bit records: smaller is better, as exact()'s (up to a constant for l2)
        auto approx = [&](int64_t i) {
            return -fx_qrec_key(record(i), d, codes->qc, codes->qscale, codes->l2);
        };
        // row i's level-0 neighbours: nl[0 .. nn), -1 after the last
        auto links = [&](int64_t i, const int32_t **nl, size_t *nn) {
            if (walk != nullptr) {
                *nl = reinterpret_cast<const int32_t *>(walk->blocks + (size_t)i * walk->stride +
                                                        walk->links);
                *nn = walk->m0;
            } else {
                size_t lb, le;
                g.neighbor_range(i, 0, &lb, &le);
                *nl = g.neighbors.data() + lb;
                *nn = le - lb;
            }
        };
        auto dis = [&](int64_t i) {
            visited++;
            return codes != nullptr ? approx(i) : exact(i);
        };
        auto prefetch = [&](int64_t i) {
            if (codes != nullptr)
                dist_prefetch(record(i), walk->links, 0);
            else
                dist_prefetch(base + (size_t)i * d, d * sizeof(float), 0);
        };
        auto prefetch_links = [&](int64_t i) {
            const int32_t *nl;
            size_t nn;
            links(i, &nl, &nn);
            dist_prefetch(nl, nn * sizeof *nl, 0);
        };
        auto allowed = [&](int64_t i) {
            return allow == nullptr || ((allow[i >> 6] >> (i & 63)) & 1u);
        };

        *exhausted = 0;
        *found_out = 0;
        if (n == 0 || g.entry_point < 0) {
            *visited_out = 0;
            *allowed_seen_out = 0;
            return STW_OK;
        }
        ef = std::max(ef, k);
        // one expansion scores at most m0 rows (a two-hop list is cut there); an upper level's
        // step at most its slots (M in FAISS's own graphs, but a loaded file decides)
        const size_t m0 = level0_slots(g);
        size_t slots = m0;
        for (size_t l = 1; l + 1 < g.cum_nneighbor_per_level.size(); l++)
            slots = std::max(slots, (size_t)(g.cum_nneighbor_per_level[l + 1] -
                                             g.cum_nneighbor_per_level[l]));
        std::vector<int64_t> &batch = tl_batch; // per thread, like the visited table
        batch.resize(slots + 1);
        std::vector<float> &dists = tl_dists;
        dists.resize(slots + 1);
        float *bd = dists.data();
        // score batch[0 .. nb) into bd: every record requested first, then scored (see below)
        auto score = [&](size_t nb) {
            for (size_t i = 0; i < nb; i++)
                prefetch(batch[i]);
            for (size_t i = 0; i < nb; i++)
                bd[i] = dis(batch[i]);
        };
        // greedy descent through the upper levels (unfiltered: they only navigate)
        int64_t nearest = g.entry_point;
        float dn = dis(nearest);
        for (int level = g.max_level; level >= 1; level--) {
            for (;;) {
                int64_t prev = nearest;
                size_t b, e, nb = 0;
                g.neighbor_range(nearest, level, &b, &e);
                for (size_t j = b; j < e && g.neighbors[j] >= 0; j++)
                    batch[nb++] = g.neighbors[j];
                score(nb);
                for (size_t i = 0; i < nb; i++)
                    if (bd[i] < dn) {
                        nearest = batch[i];
                        dn = bd[i];
                    }
                if (nearest == prev)
                    break;
            }
        }
        // level 0: candidates may be any row; results hold allowed rows only
        Visited &vt = tl_visited;
        vt.reset(n);
        // ACORN truncates a node's filtered two-hop list to the graph's degree: at 10 % of
        // 200k rows, uncapped lists scored ~6x the rows for 1.8 ms; capped at m0 (64), 1.4 ms
        // at the same recall (1.000); at 32, 1.0 ms but recall 0.993 (docs/search.md)
        const size_t hop2_cap = m0;
        std::priority_queue<DistId, std::vector<DistId>, std::greater<DistId>> cand;
        std::priority_queue<DistId> res; // worst allowed result on top
        cand.push({dn, nearest});
        vt.test_set((size_t)nearest);
        if (allowed(nearest)) {
            res.push({dn, nearest});
            allowed_seen++;
        }
        while (!cand.empty()) {
            DistId c = cand.top();
            if (res.size() >= ef && c.first > res.top().first)
                break;
            cand.pop();
            // the next row to expand is most often the next best candidate: its neighbour
            // list starts on its way into the cache while this row's are scored
            if (!cand.empty())
                prefetch_links(cand.top().second);
            const int32_t *nl;
            size_t nn;
            links(c.second, &nl, &nn);
            // Collect the rows to score first (at most m0: the plain walk takes a node's
            // neighbours, the two-hop one stops at hop2_cap), then score them with the next
            // records already on their way into the cache.
            size_t nb = 0;
            if (!two_hop) {
                for (size_t j = 0; j < nn; j++) {
                    int64_t v = nl[j];
                    if (v < 0)
                        break;
                    if (!vt.test_set((size_t)v))
                        batch[nb++] = v;
                }
            } else {
                // ACORN-1: score allowed neighbours only; when fewer than 90 % of this
                // node's neighbours pass, reach through the others to their neighbours
                size_t total = 0, pass = 0;
                for (; total < nn && nl[total] >= 0; total++)
                    pass += allowed(nl[total]);
                bool hop2 = pass * 10 < total * 9;
                // The allowed direct neighbours first; the two-hop ones after, up to a list
                // of hop2_cap rows (ACORN's truncation to M: the walk's cost per expansion
                // stays that of an unfiltered one).
                for (size_t j = 0; j < total; j++) {
                    int64_t v = nl[j];
                    if (allowed(v) && !vt.test_set((size_t)v))
                        batch[nb++] = v;
                }
                for (size_t j = 0; hop2 && j < total && nb < hop2_cap; j++) {
                    int64_t v = nl[j];
                    if (allowed(v) || vt.test_set((size_t)v))
                        continue;
                    const int32_t *nl2;
                    size_t nn2;
                    links(v, &nl2, &nn2);
                    for (size_t t = 0; t < nn2 && nb < hop2_cap; t++) {
                        int64_t u = nl2[t];
                        if (u < 0)
                            break;
                        if (allowed(u) && !vt.test_set((size_t)u))
                            batch[nb++] = u;
                    }
                }
            }
            // Score the whole batch before touching the queues: a queue test on each fresh
            // distance is a branch the next rows' loads would wait behind (mispredicted, it
            // discards them), so their records are requested together and scored after.
            score(nb);
            for (size_t i = 0; i < nb; i++) {
                int64_t v = batch[i];
                float dv = bd[i];
                bool ok = two_hop || allowed(v); // the two-hop batch holds allowed rows only
                allowed_seen += ok;
                if (res.size() < ef || dv < res.top().first) {
                    cand.push({dv, v});
                    if (ok) {
                        res.push({dv, v});
                        if (res.size() > ef)
                            res.pop();
                    }
                }
            }
            if (visit_limit > 0 && visited >= visit_limit) {
                *exhausted = 1;
                break;
            }
        }
        if (codes != nullptr) { // the best by the 8-bit score, re-scored in float
            std::vector<DistId> best;
            best.reserve(res.size());
            // Of the ef rows, only the best 3k (at least 24) by the 8-bit score: its error
            // (~1e-3 for unit vectors) reorders near ties, not rows 30 places apart. Each float
            // row is 24 cache lines; at 200k, re-scoring 20 instead of 64 kept recall 1.000 and
            // took 0.15 ms p50 at 100 % instead of 0.17 (docs/search.md, session 8).
            while (res.size() > std::max(k * 3, (size_t)24))
                res.pop();
            for (; !res.empty(); res.pop())
                best.push_back({0.0f, res.top().second});
            // float rows are 24 cache lines at d = 384: two rows in flight
            for (size_t i = 0; i < best.size(); i++) {
                for (size_t j = i == 0 ? 0 : i + 2; j <= i + 2 && j < best.size(); j++)
                    dist_prefetch(base + (size_t)best[j].second * d, d * sizeof(float), 0);
                best[i].first = exact(best[i].second);
            }
            for (const DistId &x : best)
                res.push(x);
        }
        while (res.size() > k)
            res.pop();
        size_t nres = res.size();
        for (size_t i = nres; i-- > 0;) {
            keys_out[i] = -res.top().first; /* similarity, or -squared L2 */
            rows_out[i] = res.top().second;
            res.pop();
        }
        if (ix->inject_row >= 0 && k > 0) { // test hook: pretend the graph returned it first
            if (nres == k)
                nres--;
            std::memmove(keys_out + 1, keys_out, nres * sizeof *keys_out);
            std::memmove(rows_out + 1, rows_out, nres * sizeof *rows_out);
            keys_out[0] = 1e30f;
            rows_out[0] = ix->inject_row;
            nres++;
        }
        *found_out = nres;
        *visited_out = visited;
        *allowed_seen_out = allowed_seen;
        return STW_OK;
    } catch (const std::exception &e) {
        return fail(err, "search", e.what());
    } catch (...) {
        return fail(err, "search", "unknown exception");
    }
}
