/*
 * archive.h - the one ingest pipeline: every instance that enters cloudpacs
 * (DIMSE C-STORE, STOW-RS, folder and SMB intake, `cloudpacs import`) is
 * stored through it, and nothing else writes instance blobs or index rows.
 *
 * An ingest streams: begin, write the bytes as they arrive (a socket's
 * P-DATA PDVs, an HTTP body part, a file read in chunks), finish. Only the
 * header of the instance (the elements before Pixel Data, at most
 * ARCHIVE_HEADER_MAX bytes) is kept in memory, long enough to extract the
 * index record; the rest goes straight to a temporary blob. Every stored
 * blob is a Part 10 file (PS3.10 7.1): a file that came with its File Meta
 * Information is stored byte for byte; a bare data set (C-STORE, PS3.7 9.1.1
 * and 9.3.1) gets a preamble and a meta group built for it.
 *
 * Finish follows the durability rules of docs/storage.md: the blob is
 * committed (fsync, rename, directory fsync), then its index row, and only
 * then does finish report success, so an acknowledged instance is never
 * lost. A resend of the same SOP Instance UID with the same data set is
 * idempotent; different bytes follow the configured duplicate policy.
 * archive_repair, run at start-up, finishes or undoes what a crash left.
 *
 * An archive is safe to use from several threads at once; an ingest belongs
 * to one thread at a time. Like every library layer, it does not log: the
 * result carries what the caller logs.
 */
#ifndef CP_ARCHIVE_H
#define CP_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "dicom/charset.h"
#include "dicom/ts.h"
#include "index/index.h"
#include "store/store.h"

typedef struct archive archive;
typedef struct archive_ingest archive_ingest;

/* What to do when a SOP Instance UID comes again with a different data set. */
typedef enum {
    ARCHIVE_DUP_KEEP,       /* keep what is stored; answer success with a warning */
    ARCHIVE_DUP_OVERWRITE,  /* replace it (the index logs REPLACED) */
    ARCHIVE_DUP_REJECT,     /* keep what is stored; answer a failure */
} archive_dup_policy;

/*
 * The settings of one sending source: an AE title, or a folder whose files
 * are imported (a source named "/srv/drop" applies to "/srv/drop/a/b.dcm").
 */
typedef struct archive_source {
    const char *name;               /* AE title or path; NULL or "" for the default */
    int64_t institution_id;         /* the sending institution; 0 when unknown */
    /*
     * Issuer of Patient ID (0010,0021) used when an instance has none, so
     * that the same Patient ID from two clinics stays two patients. NULL:
     * "INSTITUTION-<id>" when institution_id is set, else the source name.
     */
    const char *default_issuer;
    dcm_charset_policy charset;     /* how its text is decoded */
} archive_source;

/* Bits of archive_config.test_flags, for the crash tests only. */
enum {
    /* Finish returns CP_ERR_STOPPED right after the blob commit, as a crash would. */
    ARCHIVE_TEST_STOP_AFTER_BLOB = 1u << 0,
};

typedef struct archive_config {
    archive_dup_policy duplicate_policy;
    /* The source used for senders no entry of `sources` names. */
    archive_source default_source;
    const archive_source *sources;
    size_t source_count;
    /*
     * The root directory when the store is the filesystem store (its blobs
     * are files named by their keys there): archive_repair walks it to find
     * blobs the index lacks. NULL skips that half of the reconciliation.
     */
    const char *fs_root;
    unsigned test_flags;
} archive_config;

/* Where the bytes of one ingest come from. */
typedef struct archive_source_info {
    /* The sender: calling AE title, import folder or "stow"; matched against the sources. */
    const char *source;
    /*
     * C-STORE: the bytes are a bare data set in this (negotiated) transfer
     * syntax, and the SOP Class and Instance UIDs of the command are given.
     * NULL: the bytes are a Part 10 file, or a bare data set whose syntax
     * is guessed from its first bytes.
     */
    const dcm_transfer_syntax *transfer_syntax;
    const char *sop_class_uid;
    const char *sop_instance_uid;
    /* µs since 1970 UTC when the instance arrived; 0 means now. */
    int64_t received_us;
    /*
     * Added: the institution the sender acts for, when known from who it
     * is (the principal of a STOW-RS request or of an AE): > 0 wins over
     * the source's settings; 0 keeps them.
     */
    int64_t institution_id;
} archive_source_info;

typedef enum {
    ARCHIVE_STORED,         /* a new instance */
    ARCHIVE_DUPLICATE,      /* the same data set again: nothing changed (success) */
    ARCHIVE_REPLACED,       /* different data set, policy overwrite: replaced */
    ARCHIVE_KEPT,           /* different data set, policy keep: success with a warning */
    ARCHIVE_REJECTED,       /* not stored; see the reason */
} archive_outcome;

typedef enum {
    ARCHIVE_REASON_NONE,
    ARCHIVE_REASON_NOT_DICOM,       /* the bytes are not a DICOM file or data set */
    ARCHIVE_REASON_MALFORMED,       /* a data set that is broken or truncated */
    ARCHIVE_REASON_MISSING_UID,     /* no valid SOP Class/Instance, Study or Series UID */
    ARCHIVE_REASON_UID_MISMATCH,    /* the data set's UIDs are not the command's */
    ARCHIVE_REASON_NOT_STORAGE,     /* a registered SOP class that is not for storage */
    ARCHIVE_REASON_BAD_VALUE,       /* an attribute the index needs is invalid */
    ARCHIVE_REASON_DUPLICATE,       /* different data set, refused by policy reject */
    ARCHIVE_REASON_RESOURCES,       /* store, index or memory failed: try again later */
} archive_reason;

typedef struct archive_result {
    archive_outcome outcome;
    archive_reason reason;
    char detail[CP_ERROR_DETAIL_MAX];           /* why, for logs; no patient data */
    char sop_class_uid[INDEX_UID_MAX + 1];
    char sop_instance_uid[INDEX_UID_MAX + 1];
    char study_uid[INDEX_UID_MAX + 1];
    char series_uid[INDEX_UID_MAX + 1];
    char blob_key[INDEX_BLOB_KEY_MAX + 1];      /* where the stored instance is */
    uint64_t bytes_in;                          /* bytes given to archive_ingest_write */
    uint64_t stored_bytes;                      /* bytes of the blob written */
    size_t header_peak;                         /* most header bytes held at once */
    int64_t change_seq;                         /* the index change logged, or 0 */
} archive_result;

/*
 * An archive over a store and an index, which the caller keeps open longer
 * than the archive. cfg is copied.
 */
cp_status archive_create(store *st, index_db *idx, const archive_config *cfg, archive **out,
                         cp_error *err);

void archive_destroy(archive *a);

/* Starts an ingest. info is copied. CP_ERR_NOMEM is the only failure. */
cp_status archive_ingest_begin(archive *a, const archive_source_info *info,
                               archive_ingest **out);

/*
 * Hands over the next len bytes. A failure here (not DICOM, a store error)
 * is sticky: later writes are ignored and finish reports it, so that a
 * caller streaming from a socket can keep reading the message to its end.
 */
cp_status archive_ingest_write(archive_ingest *in, const void *data, size_t len);

/*
 * Ends the input, stores the instance and frees the ingest. *out says what
 * happened. Returns CP_OK whenever *out holds an answer for the sender
 * (rejections included); another status only with ARCHIVE_TEST_STOP_AFTER_BLOB.
 */
cp_status archive_ingest_finish(archive_ingest *in, archive_result *out);

/* Throws the ingest away (the association broke); nothing is stored. NULL is allowed. */
void archive_ingest_abort(archive_ingest *in);

/* Convenience: ingests the file at path, read in chunks, through the pipeline. */
cp_status archive_ingest_file(archive *a, const archive_source_info *info, const char *path,
                              archive_result *out);

/* Whether an outcome is a success for the sender. */
bool archive_outcome_ok(archive_outcome outcome);

/* Short stable names: "stored", "duplicate", ...; "not_dicom", "malformed", ... */
const char *archive_outcome_name(archive_outcome outcome);
const char *archive_reason_name(archive_reason reason);

/*
 * The C-STORE response status for a result (PS3.4 B.2.3, PS3.7 C): 0x0000
 * success, 0xB000 for a kept duplicate, 0x0111 duplicate refused, 0x0122 SOP
 * class not supported, 0xA900 data set does not match the command, 0xA700
 * out of resources, 0xC000 cannot understand.
 */
uint16_t archive_result_dimse_status(const archive_result *res);

typedef struct archive_repair_report {
    store_repair_report store;          /* temporaries removed by store_repair */
    uint64_t blobs_checked;
    uint64_t blobs_reindexed;           /* committed blobs the index lacked: indexed again */
    uint64_t blobs_orphaned;            /* superseded (indexed under another key): removed */
    uint64_t blobs_unreadable;          /* blobs that could not be indexed: left in place */
    uint64_t rows_checked;
    uint64_t rows_missing_blob;         /* index rows whose blob was gone: removed */
} archive_repair_report;

/*
 * Called by archive_repair once per instance it changed, so that the caller
 * can log it: what is "reindexed", "orphan_removed", "unreadable" or
 * "row_removed". No patient data is passed.
 */
typedef void (*archive_repair_fn)(void *ctx, const char *what, const char *sop_uid,
                                  const char *blob_key);

/*
 * Repairs what a crash left: temporaries older than min_age_seconds (0 at a
 * start-up where no other process writes to the store), committed blobs
 * without an index row (indexed again), superseded blobs, and index rows
 * whose blob is gone (removed, with a DELETED change). Blobs younger than
 * min_age_seconds are left alone. fn may be NULL.
 */
cp_status archive_repair(archive *a, int64_t min_age_seconds, archive_repair_fn fn, void *ctx,
                         archive_repair_report *report, cp_error *err);

/*
 * The blob key of an instance: "dicom/<institution>/<h1>/<h2>/<study uid>/
 * <series uid>/<sop uid>.dcm", where h1/h2 are two bytes of a hash of the
 * study UID as hex, so that no directory grows past some thousands of
 * entries. Exposed for tests and tools. CP_ERR_INVALID when a UID is not
 * valid.
 */
cp_status archive_blob_key(int64_t institution_id, const char *study_uid, const char *series_uid,
                           const char *sop_uid, char *out, size_t size);

#endif
