/* journal.h - the receipt journal: a query's receipt made durable by one append to a file,
 * and written into the audit trail (audit_record_query) by a background thread.
 *
 * Committing a receipt to SQLite costs ~95 us even when it is only two rows (a WAL append,
 * its locks and page writes), more than the query it records (docs/decisions.md). Here the
 * query thread encodes the receipt (struct audit_receipt, ids and hashes only) as one record,
 * writes it at the end of the current segment file DATA/receipts/NNNNNNNNNNNN.log with one
 * pwrite(), and returns: from then on the receipt survives the process (the kernel holds the
 * page, exactly as it holds a WAL commit under synchronous=NORMAL, SQLite's setting here). The
 * indexer thread reads the records back in order and appends them to the chain in one
 * transaction per batch, with their receipt rows, disclosures and usage rollups, on its own
 * connection. A segment is deleted once all of it is in the store.
 *
 * Readers of the trail call journal_sync() first: it waits until every record appended
 * before the call is indexed, so a governance read never misses an answer already given.
 * Appends wait while more than STW_JOURNAL_BACKLOG_BYTES are not yet indexed (backpressure,
 * so a slow store slows queries instead of letting the journal grow without bound), and fail
 * with STW_UNAVAILABLE if that lasts STW_JOURNAL_WAIT_MS.
 *
 * One process at a time owns a data folder's journal (flock on DATA/receipts/lock). Opening
 * it adopts the segments a previous process left (it stopped before indexing them: a crash,
 * SIGKILL, a store that stayed locked): the indexer writes those first, skipping receipts
 * already in the store and a torn last record (a write the crash cut short: its answer never
 * left). A process that cannot own the journal gets *out == NULL from journal_open and
 * commits receipts synchronously (receipt_queue.h).
 *
 * Record: "STJ1" | u32 payload length | payload | SHA-256(payload); little-endian integers;
 * strings as u32 length (0xFFFFFFFF for none), bytes, NUL (docs/data-layout.md).
 *
 * Thread: journal_append and journal_sync may be called from any number of threads. */
#ifndef STW_JOURNAL_H
#define STW_JOURNAL_H

#include "audit.h"
#include "store.h"

struct journal;

#define JOURNAL_DIR "receipts" /* under the data folder */

/* Take DATA/receipts/ (created if missing), adopt any segments left there, start the
 * indexer. *out is NULL (and STW_OK returned) when another process owns the journal or the
 * folder cannot be written. Owned: journal_close(). */
stw_code journal_open(struct store *st, struct journal **out, stw_error *err);

/* Index everything appended, stop the thread, delete the indexed segments, release the lock.
 * Segments that could not be indexed (the store failing) stay for the next open. */
void journal_close(struct journal *j);

/* Write r as one record; returns once it is in the segment file. STW_UNAVAILABLE
 * ("audit_unavailable"; "storage_full" when the file cannot grow) when it is not. */
stw_code journal_append(struct journal *j, const struct audit_receipt *r, stw_error *err);

/* Wait until everything appended before the call is in the store. STW_UNAVAILABLE
 * ("audit_unavailable", naming the indexer's last error) after STW_JOURNAL_WAIT_MS. */
stw_code journal_sync(struct journal *j, stw_error *err);

/* Records and bytes appended and indexed since open (adopted segments count as appended). */
struct journal_stats {
    unsigned long long records, indexed, bytes_pending, batches, skipped;
    double index_s; /* wall time the indexer spent in indexing steps */
};
void journal_stats(struct journal *j, struct journal_stats *out);

#endif
