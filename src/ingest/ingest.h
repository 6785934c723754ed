/*
 * ingest.h - the intake and export service: files that clinics' devices
 * drop into Windows shares or local folders are taken into the archive
 * ([intake.NAME] sections, intake.h), and completed studies are written to
 * the shares hospital systems read ([export.NAME] sections, export.h).
 * Every instance enters through the one ingest pipeline (archive.h), as a
 * DICOM Part 10 file (PS3.10 7.1); ZIP archives are unpacked entry by
 * entry; DICOMDIR files (PS3.10 7.2) are skipped, their files taken like
 * any others.
 *
 *   [intake.NAME]  url = smb://host[:port]/share/folder | /path | file:///path
 *                  user, password or credentials_file (username=, password=,
 *                  domain=); institution = CODE (or a numeric id);
 *                  after = keep | delete | move; done_dir (.cloudpacs-done,
 *                  below the folder); poll_seconds (10); stable_seconds (2)
 *   [export.NAME]  on = study_complete | report_released;
 *                  what = dicom | pdf | both (pdf and both: report_released);
 *                  target = smb://... | /path, with user/password or
 *                  credentials_file; institution = CODE (empty: all);
 *                  pattern, pdf_pattern (pattern.h); settle_seconds (10)
 *
 * One thread per source and per rule. The library does not log: what
 * deserves a log line is handed to the caller's log function.
 */
#ifndef CP_INGEST_H
#define CP_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "archive/archive.h"
#include "auth/directory.h"
#include "core/config.h"
#include "core/log.h"
#include "core/status.h"
#include "index/index.h"
#include "store/store.h"

typedef struct ingest_service ingest_service;

/* One line for the caller's log: an event name and "key=value ..." detail. */
typedef void (*ingest_log_fn)(void *ctx, cp_log_level level, const char *event,
                              const char *detail);

/* What the sources and rules work with; none of it is owned. */
typedef struct ingest_env {
    const cp_config *cfg;
    archive *arc;
    index_db *idx;
    store *st;
    directory *dir;             /* resolves institution codes; NULL: numeric ids only */
    const char *data_dir;       /* the index database and a temporary folder live there */
    ingest_log_fn log;          /* may be NULL */
    void *log_ctx;
} ingest_env;

/* Whether the configuration has any [intake.*] or [export.*] section. */
bool ingest_configured(const cp_config *cfg);

/*
 * Reads every [intake.*] and [export.*] section and opens what they need
 * (the ledger tables, the shares; nothing is connected yet). CP_ERR_CONFIG
 * with a detail naming the section when one is wrong.
 */
cp_status ingest_create(const ingest_env *env, ingest_service **out, cp_error *err);

/* Starts one thread per source and rule. */
cp_status ingest_start(ingest_service *s, cp_error *err);

/* Stops the threads (a file being taken is finished first). Safe to call twice. */
void ingest_stop(ingest_service *s);

void ingest_destroy(ingest_service *s);

/* The number of sources and rules configured. */
size_t ingest_source_count(const ingest_service *s);
size_t ingest_rule_count(const ingest_service *s);

/*
 * The status of the running service as JSON, for the REST API (GET
 * /api/intake): the tables' counts (ledger.h) plus, per configured source,
 * "url", "kind", "after", "state" (starting, up, or down: backing off),
 * "last_error", "retry_in_seconds", and per rule "target", "on", "what",
 * "institution", "state", "files_written", "pdfs_written". The caller owns
 * the result.
 */
cp_status ingest_status_json(ingest_service *s, json_t **out, cp_error *err);

/* The status from the tables of data_dir's index database alone (`cloudpacs intake status`). */
cp_status ingest_status_read(const char *data_dir, json_t **out, cp_error *err);

#endif
