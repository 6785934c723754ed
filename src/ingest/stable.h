/*
 * stable.h - the stability rule of the intake: a file is taken only once
 * its size and modification time have stayed the same for stable_us, so
 * that a file a device is still writing (or copying onto a share, which
 * SMB offers no lock against) is never read half-written.
 *
 * The tracker remembers, per path, the size and mtime last seen and since
 * when they have not changed. A scan observes every file it meets, then
 * sweeps, which forgets the paths that were not observed (gone or taken).
 */
#ifndef CP_INGEST_STABLE_H
#define CP_INGEST_STABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct stable_tracker stable_tracker;

/* A tracker with the given quiet time in µs; NULL on OOM. */
stable_tracker *stable_create(int64_t stable_us);

void stable_destroy(stable_tracker *t);

/*
 * Records a sighting of path at now_us. True when the file has kept this
 * size and mtime for stable_us or longer; otherwise *wait_us says how long
 * it must stay unchanged still (a caller rescans then). A path first seen
 * counts from now_us. False too when memory runs out (*wait_us is then
 * stable_us).
 */
bool stable_observe(stable_tracker *t, const char *path, uint64_t size, int64_t mtime_us,
                    int64_t now_us, int64_t *wait_us);

/* Forgets one path (taken). */
void stable_forget(stable_tracker *t, const char *path);

/* Forgets every path not observed since the previous sweep. */
void stable_sweep(stable_tracker *t);

/* The number of paths remembered. */
size_t stable_count(const stable_tracker *t);

#endif
