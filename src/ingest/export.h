/*
 * export.h - one export rule: studies announced complete on the change log
 * (INDEX_CHANGE_STUDY_COMPLETE, archive/completion.h) become jobs in the
 * export_job table, and each job writes the study's instances, as stored
 * (PS3.10 files), to the target under names from the rule's pattern
 * (pattern.h). Each file is written as ".<name>.part" and renamed, so that
 * a reader sees it whole or not at all. A failed job is tried again with
 * back-off (1 s doubling to 60 s) and stays in the table until it succeeds.
 *
 * A report_released rule reads the reading orders that reached the
 * released state (consult/order.h) in the same database instead, from the
 * newest release it saw (less a look-back of 300 s, so that a release
 * committed late is still found; an order already queued for the same
 * release is not queued again): one job per released order, due
 * settle_seconds (10) after the release, so that the report's SR and
 * Encapsulated PDF are in the study by then. Its job writes, per `what`,
 * the study's instances (dicom), the report PDF the film service keeps as
 * <data_dir>/film/order-<id>.pdf under pdf_pattern's name (pdf), or both.
 */
#ifndef CP_INGEST_EXPORT_H
#define CP_INGEST_EXPORT_H

#include <jansson.h>

#include "ingest/ingest.h"

typedef struct export_rule export_rule;

cp_status export_create(const ingest_env *env, const char *section, export_rule **out,
                        cp_error *err);

void export_destroy(export_rule *r);

const char *export_name(const export_rule *r);

void *export_run(void *arg);

void export_stop(export_rule *r);

/* One pass: reads the change log or the releases, runs the due jobs; *wait_us until the next. */
cp_status export_pass(export_rule *r, int64_t *wait_us, cp_error *err);

void export_status(export_rule *r, json_t *o);

#endif
