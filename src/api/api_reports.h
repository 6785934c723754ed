/*
 * api_reports.h - reports under /api/orders/{id}/report (drafts under a
 * lock, submission, review, release with its signature and SR, the
 * critical-finding acknowledgement), the signing key, templates and
 * reading statistics (docs/api.md, "Orders and reports").
 */
#ifndef CP_API_API_REPORTS_H
#define CP_API_API_REPORTS_H

#include "api/api.h"

/* Registers the routes of this part of the API. */
cp_status api_reports_register(api_service *a, http_server *s);

#endif
