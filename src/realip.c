/*
 * realip.c - who the client is, when a trusted proxy says so.
 *
 * Behind a reverse proxy every request comes from the proxy's address:
 * the access log names one client, and [status] allow lets in the whole
 * internet through it.  With [server] real_ip_from, a request whose
 * connection comes from a listed network takes its client from the
 * real_ip_header (X-Forwarded-For by default), as nginx's realip module
 * does with real_ip_recursive on: the addresses are read from the right,
 * each trusted one is a proxy of the chain, and the first untrusted one
 * is the client.  Only addresses a trusted proxy appended are believed;
 * whatever the client wrote itself lies to their left.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "molt/module.h"
#include "config.h"
#include "conn.h"
#include "realip.h"
#include "worker.h"

/* Is ss inside one of the networks of list?  A unix: socket's peer has no
 * address: the entry "unix" matches every client of one. */
int
realip_match(const struct allow_net *list, const struct sockaddr_storage *ss)
{
	const struct allow_net *a;
	const unsigned char *x, *y;
	int bits, i;

	for (a = list; a != NULL; a = a->next) {
		if (a->net.ss_family != ss->ss_family)
			continue;
		if (ss->ss_family == AF_UNIX)
			return 1;
		if (ss->ss_family == AF_INET) {
			x = (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
			y = (const void *)&((const struct sockaddr_in *)&a->net)->sin_addr;
		} else {
			x = (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
			y = (const void *)&((const struct sockaddr_in6 *)&a->net)->sin6_addr;
		}
		bits = a->prefix;
		for (i = 0; bits >= 8; i++, bits -= 8)
			if (x[i] != y[i])
				break;
		if (bits >= 8)
			continue;
		if (bits > 0 && ((x[i] ^ y[i]) & (0xff << (8 - bits)) & 0xff))
			continue;
		return 1;
	}
	return 0;
}

/*
 * One address of the list, as a proxy writes it: "203.0.113.7",
 * "2001:db8::1" or "[2001:db8::1]".  A port, a name or "unknown" is not
 * an address: the walk stops there.
 */
static int
realip_parse(const char *s, size_t len, struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN + 2];

	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, buf,
	    &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf,
	    &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		return 0;
	}
	return -1;
}

/*
 * Walks one field's value from the right.  Returns 1 with the client in
 * out, 0 if every address was a trusted proxy (out: the leftmost, the
 * walk goes on in the field before), -1 at something not an address.
 */
static int
realip_walk(const struct allow_net *trusted, const char *v,
    struct sockaddr_storage *out, int *found)
{
	const char *end = v + strlen(v), *start, *tok_end;
	struct sockaddr_storage ss;

	while (end > v) {
		start = end;
		while (start > v && start[-1] != ',')
			start--;
		tok_end = end;
		end = start > v ? start - 1 : v;
		while (start < tok_end && (*start == ' ' || *start == '\t'))
			start++;
		while (tok_end > start && (tok_end[-1] == ' ' ||
		    tok_end[-1] == '\t'))
			tok_end--;
		if (start == tok_end)
			continue;       /* "a,,b": an empty element (RFC 9110 5.6.1) */
		if (realip_parse(start, (size_t)(tok_end - start), &ss) == -1)
			return -1;
		*out = ss;
		*found = 1;
		if (!realip_match(trusted, &ss))
			return 1;
	}
	return 0;
}

/*
 * Called for every request once its head is in (req_prepare), when
 * real_ip_from is set.  Fields of the header are read last to first, as
 * one list (RFC 9110 5.3).  Nothing believable: the connection's peer
 * stays the client.
 */
void
realip_resolve(molt_request *req, const struct server_conf *sc)
{
	const char *name = sc->real_ip_header != NULL ? sc->real_ip_header :
	    "X-Forwarded-For";
	struct sockaddr_storage client;
	size_t i, len;
	int found = 0, r = 0;

	if (!realip_match(sc->real_ip_from, &req->conn->peer_sa))
		return;
	len = strlen(name);
	for (i = req->head.nheaders; i-- > 0 && r == 0;) {
		const struct http_header *hd = &req->head.headers[i];

		if (hd->name_len == len && strcasecmp(hd->name, name) == 0)
			r = realip_walk(sc->real_ip_from, hd->value, &client,
			    &found);
	}
	if (!found)
		return;
	req->client_sa = molt_palloc(req->pool, sizeof(client));
	if (req->client_sa != NULL)
		*req->client_sa = client;
}

/* The client's address as the access log and the status page see it. */
const struct sockaddr_storage *
realip_client(const molt_request *req)
{
	return req->client_sa != NULL ? req->client_sa : &req->conn->peer_sa;
}

/*
 * The client a trusted proxy named, as text without a port (the proxy
 * does not say which): "203.0.113.7", or "[2001:db8::1]" when brackets is
 * set (molt_req_peer's form), "2001:db8::1" when not (the access log's).
 * NULL when the client is the connection's peer (conn_peer says it).
 */
const char *
realip_text(molt_request *req, int brackets)
{
	const struct sockaddr_storage *ss = req->client_sa;
	char host[INET6_ADDRSTRLEN], *t;
	size_t n;

	if (ss == NULL)
		return NULL;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    host, sizeof(host));
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr,
		    host, sizeof(host));
	if (ss->ss_family == AF_INET || !brackets)
		return molt_pstrdup(req->pool, host);
	n = strlen(host);
	if ((t = molt_palloc(req->pool, n + 3)) == NULL)
		return NULL;
	t[0] = '[';
	memcpy(t + 1, host, n);
	t[n + 1] = ']';
	t[n + 2] = '\0';
	return t;
}
