/* audit.h - the append-only, hash-chained audit trail and per-query receipts.
 *
 * Each event row stores hash = SHA-256(prev_hash || canonical(event)), where canonical(event)
 * is the JSON object {"at","detail","principal","seq","type"} with sorted keys and the detail
 * in canonical JSON (docs/audit.md). Editing or deleting a row breaks the chain at that row;
 * SQLite triggers refuse UPDATE and DELETE. Appends run inside the caller's write transaction,
 * so a receipt commits together with its event. Event times never decrease along the chain
 * (a clock that steps back records the previous event's time), and a query event carries its
 * receipt's SHA-256, so the chain covers which chunks each answer returned. */
#ifndef STW_AUDIT_H
#define STW_AUDIT_H

#include <sqlite3.h>
#include <stdint.h>

#include "steward.h"
#include "store.h"

#define AUDIT_GENESIS "sha256:0000000000000000000000000000000000000000000000000000000000000000"

/* Append one event. detail_json is any JSON object (canonicalised before hashing).
 * principal may be NULL. Needs an open write transaction. */
stw_code audit_append(sqlite3 *db, int64_t at_ms, const char *type, const char *principal,
                      const char *detail_json, int64_t *seq_out, stw_error *err);

/* One disclosed chunk of a query receipt. Borrowed strings. */
struct audit_hit {
    size_t rank;
    double score;
    const char *product, *version, *chunk_id, *source_system, *document_id, *subject;
};

struct audit_receipt {
    const char *query_id, *principal, *purpose, *reason;
    int64_t at_ms, policy_version;
    size_t k;
    const char *vector_sha256;   /* "sha256:..." */
    const char *filter_json;     /* may be NULL */
    const char *versions_json;   /* [{"product","version"},...] */
    size_t nhits;
    const struct audit_hit *hits;
    int break_glass;   /* ETREAT: flagged, and a "break_glass" event is appended too */
    int text_withheld; /* minimum necessary withheld chunk text */
};

/* Append the query event and store its receipt and disclosures. Needs a write transaction.
 * sc (may be NULL) keeps db's prepared statements between calls. */
stw_code audit_record_query(sqlite3 *db, struct stmt_cache *sc, const struct audit_receipt *r,
                            stw_error *err);

/* The chain's last event: the next event's seq, its hash, and the time the next may not go
 * before (INT64_MIN for an empty chain). */
struct chain_tail {
    int64_t next_seq, at_ms;
    char hash[STW_HASH_STR_MAX];
};

struct audit_rollup {
    int64_t res, bucket;
    const char *dim; /* a string literal */
    char *key;       /* owned */
    int64_t queries, chunks;
};

/* Many receipts in one write transaction (the receipt journal's indexer): what consecutive
 * receipts share stays in memory between them instead of being read and written per
 * receipt: the chain's tail, the last subject run, and the usage rollups, summed and written
 * by audit_batch_end (or when ROLL_MAX rows are pending). Between begin and end nothing else
 * may append to the chain in that transaction. audit_record_query is one receipt's batch. */
struct audit_batch {
    struct chain_tail tail;
    int64_t run, run_upto, run_upto_at; /* the last subject run */
    struct audit_rollup *roll;
    size_t nroll;
};
stw_code audit_batch_begin(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                           stw_error *err);
stw_code audit_batch_query(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                           const struct audit_receipt *r, stw_error *err);
/* Another event in the batch (after the receipts before it), at at_ms or the tail's time. */
stw_code audit_batch_event(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                           int64_t at_ms, const char *type, const char *principal,
                           const char *detail_json, stw_error *err);
/* Before COMMIT. */
stw_code audit_batch_end(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                         stw_error *err);
/* Always, also after a failure (the transaction is then rolled back by the caller). */
void audit_batch_release(struct audit_batch *b);

/* Read side; each returns owned JSON text (free()). */
stw_code audit_query_json(sqlite3 *db, const char *query_id, char **out, stw_error *err);
stw_code audit_events_json(sqlite3 *db, const stw_event_filter *f, char **out, stw_error *err);
/* Recomputes the whole chain (and checks it against pin when not NULL: see
 * stw_audit_verify_pinned). */
stw_code audit_verify_json(sqlite3 *db, const stw_audit_pin *pin, char **out, int *ok_out,
                           stw_error *err);
/* {"events":N,"head":"sha256:..."} from the last row, without verifying. */
stw_code audit_head_json(sqlite3 *db, char **out, stw_error *err);
/* audit_fhir.c: the events in [since, until) as FHIR R4 AuditEvent lines (see
 * stw_audit_export_fhir). Needs a read transaction for one snapshot. */
stw_code audit_export_fhir(sqlite3 *db, int64_t since, int64_t until, stw_emit_fn emit,
                           void *ctx, stw_error *err);
stw_code audit_disclosures_json(sqlite3 *db, const char *subject, int64_t since, int64_t until,
                                char **out, stw_error *err);
stw_code audit_usage_json(sqlite3 *db, const char *group_by, int64_t since, int64_t until,
                          char **out, stw_error *err);

#endif
