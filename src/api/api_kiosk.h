/*
 * api_kiosk.h - the self-service print kiosk over HTTP (docs/api.md,
 * "Kiosk"): a patient identifies at a hospital's kiosk (the QR code of
 * their report, or the accession number and their birth date), the kiosk
 * lists and prints their released reports and records each print; the
 * hospital's admin counts the prints per day and kiosk.
 */
#ifndef CP_API_API_KIOSK_H
#define CP_API_API_KIOSK_H

#include <stdbool.h>

#include "api/api.h"

/* Registers /api/kiosk/... (every route needs a principal: the kiosk or an admin). */
cp_status api_kiosk_register(api_service *a, http_server *s);

/*
 * Whether a kiosk may go where the request goes: /api/kiosk/... and
 * /api/me only. api_authenticate answers 403 to a kiosk anywhere else
 * (DICOMweb, orders, the film of an order), so that its token, which
 * carries its institution's grants like any device's, opens nothing else.
 */
bool api_kiosk_route(const http_request *req);

#endif
