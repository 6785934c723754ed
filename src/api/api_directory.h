/*
 * api_directory.h - the institutions, contracts, API tokens and application entities
 * of the directory under /api/.
 */
#ifndef CP_API_API_DIRECTORY_H
#define CP_API_API_DIRECTORY_H

#include "api/api.h"

/* Registers the routes of this part of the API. */
cp_status api_directory_register(api_service *a, http_server *s);

#endif
