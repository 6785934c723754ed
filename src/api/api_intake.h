/*
 * api_intake.h - the intake and export status over HTTP (docs/api.md,
 * "Intake and export"): GET /api/intake answers what the service of the
 * SMB and folder intake and of the exports knows (ingest/ingest.h), for
 * the system administrator or anyone holding metrics.read. The status is
 * obtained through the api_intake_status_fn set with api_set_intake_status,
 * so that the API does not depend on who runs that service.
 */
#ifndef CP_API_API_INTAKE_H
#define CP_API_API_INTAKE_H

#include "api/api.h"

/* Registers GET /api/intake. */
cp_status api_intake_register(api_service *a, http_server *s);

#endif
