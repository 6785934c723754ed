/*
 * api_users.h - the users of the directory under /api/users: accounts, roles,
 * passwords, lockouts, sessions and qualifications.
 */
#ifndef CP_API_API_USERS_H
#define CP_API_API_USERS_H

#include "api/api.h"

/* Registers the routes of this part of the API. */
cp_status api_users_register(api_service *a, http_server *s);

#endif
