/*
 * api_session.h - POST and DELETE /api/session (signing in and out) and the caller's own
 * account under /api/me: who it is, its password, its second factor.
 */
#ifndef CP_API_API_SESSION_H
#define CP_API_API_SESSION_H

#include "api/api.h"

/* Registers the routes of this part of the API. */
cp_status api_session_register(api_service *a, http_server *s);

#endif
