/* ingest.h - `steward ingest`: bulk load of one product version from JSONL.
 *
 * Reads one CHUNK object (docs/api.md) per line, validates each line with the same parser as
 * the HTTP path (json.c) and the same core checks (stw_chunks_add), and adds them in atomic
 * batches. Re-running after an interruption adds nothing twice: identical chunks count as
 * unchanged. Vectors may instead come from a little-endian float32 file (row i = line i).
 * Talks to the store through include/steward.h, never over HTTP, so it may run while
 * `steward serve` serves the same folder (SQLite WAL). */
#ifndef STW_INGEST_H
#define STW_INGEST_H

/* argv[0] is "ingest". Returns the process exit code: 0 ok, 1 failure, 2 usage. */
int ingest_main(int argc, char **argv);

#endif
