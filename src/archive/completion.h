/*
 * completion.h - study completion: a study is announced as complete once
 * no instance of it has arrived for a configured quiet time, so that the
 * reading clock starts when the images are all there (the "study
 * complete" moment that DICOM itself leaves to the archive; IHE SWF
 * uses the same quiet-time rule for its Instance Availability).
 *
 * completion_pass asks the index for studies quiet since now - quiet,
 * marks each complete (index_mark_study_complete, which also puts an
 * INDEX_CHANGE_STUDY_COMPLETE on the change log for later services to read
 * from a position) and tells the caller about each, for its log line. The
 * server runs it periodically on a thread of its own (cli/cmd_serve.c).
 */
#ifndef CP_ARCHIVE_COMPLETION_H
#define CP_ARCHIVE_COMPLETION_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "index/index.h"

/* What was announced: one study. */
typedef struct completion_study {
    char study_uid[INDEX_UID_MAX + 1];
    uint32_t instances;
    int64_t institution_id;
    int64_t last_arrival_us;
} completion_study;

/* Called per study announced, after it was marked. */
typedef void (*completion_fn)(void *ctx, const completion_study *study);

/*
 * One pass at now_us (µs since 1970 UTC) with quiet_us of quiet time: at
 * most COMPLETION_BATCH_MAX studies. A study that grew between the query
 * and the mark (CP_ERR_AGAIN) is left for a later pass, when it is quiet
 * again; one deleted meanwhile (CP_ERR_NOT_FOUND) is skipped. *announced
 * counts the studies announced. Fails on the index's other failures.
 */
cp_status completion_pass(index_db *idx, int64_t now_us, int64_t quiet_us, completion_fn fn,
                          void *ctx, size_t *announced, cp_error *err);

#endif
