/* demo.h - `steward demo`: a guided, repeatable tour of Steward on synthetic clinical data.
 *
 * The demo builds a throw-away store in a local folder through the public core API
 * (include/steward.h, called in-process, not over HTTP): four data products from four domains,
 * principals and grants, one suppression; then it asks the same questions as different callers
 * and prints what each one gets, a pinned-version query, an audit receipt and the commands to
 * try the same store over HTTP. Vectors come from a deterministic feature-hashing embedder
 * ("demo-hash-256") so that every run prints the same rankings.
 */
#ifndef STW_DEMO_H
#define STW_DEMO_H

/* Runs `steward demo [--data DIR]`. argv[0] is the subcommand name ("demo"); a leading
 * "demo" in argv[1] is also accepted, so main.c may pass its argv shifted or not.
 * DIR defaults to ./steward-demo. If DIR already holds a Steward store (a steward.db file) it
 * is removed and recreated; a non-empty folder that is not a store is refused.
 * Prints the tour on stdout and errors on stderr. Returns the process exit status: 0 on
 * success, 1 when a step failed (the stw error name and message are printed), 2 on bad usage.
 * Thread: main thread only; opens and closes its own stw_db. */
int demo_main(int argc, char **argv);

#endif /* STW_DEMO_H */
