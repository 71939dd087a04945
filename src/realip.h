#ifndef MOLT_REALIP_H
#define MOLT_REALIP_H

#include <sys/socket.h>

#include "config.h"
#include "conn.h"

int  realip_match(const struct allow_net *list, const struct sockaddr_storage *ss);
void realip_resolve(molt_request *req, const struct server_conf *sc);
const struct sockaddr_storage *realip_client(const molt_request *req);
const char *realip_text(molt_request *req, int brackets);

#endif /* MOLT_REALIP_H */
