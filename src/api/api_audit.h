/*
 * api_audit.h - reading the audit trail (PS3.15 A.5): GET /api/audit, the
 * ATNA-shaped export and the hash chain's verification.
 */
#ifndef CP_API_API_AUDIT_H
#define CP_API_API_AUDIT_H

#include "api/api.h"

/* Registers the routes of this part of the API. */
cp_status api_audit_register(api_service *a, http_server *s);

#endif
