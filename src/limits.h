/* limits.h - every cap and default in one place (SQLite's sqliteLimit.h, curl's DYN_*).
 * Runtime-configurable values have their default here; the config layer may override them. */
#ifndef STW_LIMITS_H
#define STW_LIMITS_H

#define STW_DEFAULT_MAX_BODY      (16u * 1024u * 1024u) /* HTTP request body bytes (413 above) */
#define STW_DEFAULT_MAX_K         1000u                 /* largest k a query may ask for */
#define STW_DEFAULT_MAX_BATCH     10000u                /* chunks per POST .../chunks */
#define STW_DEFAULT_MAX_DIMENSION 4096u                 /* largest contract dimension */
#define STW_DEFAULT_POOL_SIZE     8u                    /* SQLite connections */
#define STW_DEFAULT_HTTP_THREADS  4u                    /* libmicrohttpd polling threads */
#define STW_DEFAULT_REQUEST_TIMEOUT 30u /* seconds of inactivity before a connection is closed */
#define STW_DEFAULT_MAX_HEADER    (64u * 1024u) /* request line + headers (431 above) */
#define STW_MIN_MAX_HEADER        (4u * 1024u)
#define STW_MAX_MAX_HEADER        (1024u * 1024u)
#define STW_MAX_PRODUCTS_PER_QUERY 32u
#define STW_MAX_FILTER_VALUES     256u   /* values in one filter list (source_system, section) */
#define STW_MAX_TEXT_BYTES        (1u * 1024u * 1024u) /* one chunk's text */
#define STW_MAX_JSON_FIELD_BYTES  (64u * 1024u)        /* provenance / metadata object as JSON */
#define STW_MAX_REASON_BYTES      1024u
#define STW_BUSY_TIMEOUT_MS       5000
#define STW_SQLITE_MMAP_BYTES     "0" /* off: a growing file remaps in every pooled connection */
#define STW_SQLITE_CACHE_KIB      "-16384"      /* 16 MiB page cache per connection */
#define STW_SQLITE_CHECKPOINT_PAGES "40000"     /* backstop: SQLite's own checkpoint in a commit */
#define STW_CHECKPOINT_PAGES      8000          /* WAL pages that wake the checkpoint thread */
#define STW_CHECKPOINT_BACKSTOP_PAGES 40000     /* ... and that make a commit checkpoint itself */
#define STW_CHECKPOINT_RESTART_PAGES 16000      /* a WAL this long after a checkpoint: RESTART */
#define STW_AUDIT_PAGE_MAX        1000u
#define STW_AUDIT_PAGE_DEFAULT    100u
#define STW_SUBJECT_RUN_EVENTS    1024  /* chain events per sorted run of the subject index */
/* the receipt journal (journal.h) */
#define STW_JOURNAL_SEGMENT_BYTES (4u * 1024u * 1024u) /* a segment this long: the next one */
#define STW_JOURNAL_BACKLOG_BYTES (4u * 1024u * 1024u) /* appended, not indexed: appends wait */
#define STW_JOURNAL_WAIT_MS       10000 /* the longest an append or a trail read waits */
#define STW_JOURNAL_RETRY_MS      250   /* after the indexer failed (store locked, full) */
#define STW_JOURNAL_LINGER_MS     5     /* under load, the least time between two batches */
#define STW_JOURNAL_LINGER_BYTES  (256u * 1024u) /* ... unless this much is waiting */
#define STW_JOURNAL_BATCH_RECORDS 512u  /* receipts per indexing transaction */
#define STW_JOURNAL_READ_BYTES    (512u * 1024u) /* journal bytes read per indexing step */
#define STW_JOURNAL_RECORD_MAX    (64u * 1024u * 1024u) /* larger is damage */


/* Planner defaults (docs/search.md: measured on the 2-core reference machine) */
#define STW_DEFAULT_HNSW_MIN_ROWS        20000u
#define STW_DEFAULT_HNSW_M               32u
#define STW_DEFAULT_HNSW_EF_CONSTRUCTION 128u
#define STW_DEFAULT_HNSW_EF              64u
#define STW_DEFAULT_HNSW_EF_MAX          512u
#define STW_DEFAULT_EXACT_MAX_ROWS       25000u
#define STW_DEFAULT_HNSW_MIN_SELECTIVITY 0.05
#define STW_DEFAULT_TWO_HOP_BELOW        0.2
#define STW_DEFAULT_QUANTIZED_MIN_ROWS   2000u
#define STW_DEFAULT_BINARY_MIN_ROWS      10000u
#define STW_DEFAULT_SCAN_MAX_SHARE       0.1
#define STW_DEFAULT_CELLS_MAX           2000u
#define STW_DEFAULT_CELLS_MIN_SHARE     0.05
/* a version's rows file (chunk text and provenance) up to this size is read into memory at
 * load; a larger one is mapped (docs/config.md) */
#define STW_DEFAULT_ROWS_MEMORY_MAX     ((size_t)1 << 30)
#define STW_CELL_ROWS                   100u /* rows a cell at least (cells = rows / this) */

#endif
