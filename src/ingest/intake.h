/*
 * intake.h - one intake source: a folder of a share, or a local folder,
 * scanned every poll_seconds (a local folder also on inotify events), whose
 * stable files (stable.h) not yet in the ledger (ledger.h) are taken into
 * the archive, then kept, deleted or moved. A share that is down is tried
 * again after 1 s, doubling to 60 s; nothing is recorded for a file whose
 * reading failed, so it is taken once the share is back.
 */
#ifndef CP_INGEST_INTAKE_H
#define CP_INGEST_INTAKE_H

#include <jansson.h>

#include "ingest/ingest.h"
#include "ingest/share.h"

typedef struct intake intake;

/* Reads section [intake.NAME] of env->cfg. */
cp_status intake_create(const ingest_env *env, const char *section, intake **out,
                        cp_error *err);

void intake_destroy(intake *in);

/* The source's name (NAME). */
const char *intake_name(const intake *in);

/* The thread's body: runs until intake_stop. arg is the intake. */
void *intake_run(void *arg);

/* Asks the thread to stop; it returns from intake_run soon after. */
void intake_stop(intake *in);

/*
 * One pass as intake_run makes it, for tests: scans, takes what is stable.
 * *wait_us receives when a pass is due again.
 */
cp_status intake_pass(intake *in, int64_t *wait_us, cp_error *err);

/* Adds the running state to o (a source object of the status JSON). */
void intake_status(intake *in, json_t *o);

/* Resolves an institution CODE, or a numeric id, to an id; "" is 0. */
cp_status intake_institution(directory *dir, const char *code, int64_t *id, cp_error *err);

/* The share settings of a section: url_key names the URL key ("url" or "target"). */
cp_status intake_share_open(const cp_config *cfg, const char *section, const char *url_key,
                            share **out, cp_error *err);

#endif
