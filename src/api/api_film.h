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

/* Registers /api/orders/{id}/film, /film/api/... and the page at /film/. */
cp_status api_film_register(api_service *a, http_server *s);

/*
 * After a release: a share link for the study, the report PDF with its QR
 * code kept in the film directory and stored into the study as an
 * Encapsulated PDF. Failures are logged; the release stands.
 */
void api_film_on_release(api_service *a, http_request *req, const order *o,
                         const report_version *v);

#endif
