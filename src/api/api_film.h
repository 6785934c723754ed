/*
 * api_film.h - cloud film over HTTP (docs/api.md, "Cloud film"): the
 * report PDF and share link made when a report is released, the clinic's
 * copy of that PDF, and the patient's public routes under /film/api/.
 */
#ifndef CP_API_API_FILM_H
#define CP_API_API_FILM_H

#include "api/api.h"
#include "consult/order.h"
#include "consult/report.h"
#include "film/share.h"

/* Registers /api/orders/{id}/film, /film/api/... and the page at /film/. */
cp_status api_film_register(api_service *a, http_server *s);

/*
 * After a release: a share link for the study, the report PDF with its QR
 * code kept in the film directory and stored into the study as an
 * Encapsulated PDF. Failures are logged; the release stands.
 */
void api_film_on_release(api_service *a, http_request *req, const order *o,
                         const report_version *v);

/*
 * Added for electronic film (api_film_sheet.c): the share session of a
 * public /film/api/{token} request, checked as for the other public routes
 * (false after answering 404 or 503), and the audit record of what it read.
 */
bool api_film_gate(api_service *a, http_request *req, film_share_link *link);
void api_film_audit(api_service *a, http_request *req, const film_share_link *link,
                    audit_event event, const char *type);

/*
 * Added for the study download (api_film_download.c): api_film_gate and
 * then ?study=<uid> as the other routes take it (false after a 404: not a
 * study of the link's scope; link->study_uid becomes the one asked for),
 * and the path of the study's released report PDF (false when there is
 * none).
 */
bool api_film_gate_study(api_service *a, http_request *req, film_share_link *link);
bool api_film_report_path(api_service *a, const char *study_uid, char *path, size_t cap);

#endif
