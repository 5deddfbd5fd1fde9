/*
 * pluto-xfrm-shim.c: an LD_PRELOAD library that lets libreswan's pluto believe its ESP
 * SAs were installed on a kernel without ESP (tests/interop_libreswan.rs).
 *
 * pluto talks to the kernel over a NETLINK_XFRM socket: write() of a request, then
 * recvfrom() until the answer with the request's sequence number. This host's kernel
 * has XFRM (policies, SPI allocation) but no ESP, so XFRM_MSG_NEWSA/UPDSA of an ESP SA
 * fails and pluto gives up its CHILD SA. Here such a request never reaches the kernel:
 * it is answered with a success ACK, and the SA (its whole message) is kept so that a
 * later XFRM_MSG_GETSA (traffic counters) is answered with it and XFRM_MSG_DELSA with
 * an ACK. The SA would have replaced the larval state that XFRM_MSG_ALLOCSPI left in
 * the kernel; that state is deleted instead (on a socket of our own), or the kernel
 * would report its expiry (after net.core.xfrm_acq_expires, 30 s) and pluto would
 * drop the CHILD SA. Everything else (policies, ALLOCSPI, flushes) goes to the real kernel, and
 * everything pluto sends on the wire is pluto's own. Each faked request is logged
 * ("xfrm-shim: ...") to the file named by PLUTO_XFRM_SHIM_LOG (pluto closes its stderr),
 * so the test can see what was faked.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_SAS 64
#define MAX_MSG 4096

struct sa {
	int used;
	__u32 spi;
	__u8 proto;
	xfrm_address_t daddr;
	size_t len;
	unsigned char msg[MAX_MSG];
};

static struct sa sas[MAX_SAS];
/* The one answer owed on the XFRM socket (pluto waits for each before the next). */
static int owed_fd = -1;
static size_t owed_len;
static unsigned char owed[MAX_MSG];

static void note(const char *what, __u32 spi)
{
	const char *path = getenv("PLUTO_XFRM_SHIM_LOG");
	FILE *f = path != NULL ? fopen(path, "a") : NULL;
	if (f == NULL)
		return;
	fprintf(f, "xfrm-shim: %s ESP SA spi 0x%08x acknowledged\n", what, ntohl(spi));
	fclose(f);
}

static int is_xfrm(int fd)
{
	int v;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) < 0 || v != AF_NETLINK)
		return 0;
	l = sizeof(v);
	return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &l) == 0 && v == NETLINK_XFRM;
}

static struct sa *find(__u32 spi, __u8 proto, const xfrm_address_t *daddr)
{
	for (int i = 0; i < MAX_SAS; i++)
		if (sas[i].used && sas[i].spi == spi && sas[i].proto == proto &&
		    memcmp(&sas[i].daddr, daddr, sizeof(*daddr)) == 0)
			return &sas[i];
	return NULL;
}

static void owe_ack(int fd, const struct nlmsghdr *req)
{
	struct nlmsghdr *h = (struct nlmsghdr *)owed;
	struct nlmsgerr *e = NLMSG_DATA(h);
	memset(owed, 0, sizeof(owed));
	h->nlmsg_len = NLMSG_LENGTH(sizeof(*e));
	h->nlmsg_type = NLMSG_ERROR;
	h->nlmsg_flags = NLM_F_CAPPED;
	h->nlmsg_seq = req->nlmsg_seq;
	e->error = 0;
	e->msg = *req;
	owed_len = h->nlmsg_len;
	owed_fd = fd;
}

/*
 * Deletes the kernel's larval state for the SPI that the SA would have filled in (an
 * inbound SA's SPI comes from ALLOCSPI; for an outbound one there is none, and the
 * kernel's "no such state" is ignored).
 */
static void drop_larval(const struct xfrm_usersa_info *p)
{
	struct {
		struct nlmsghdr n;
		struct xfrm_usersa_id id;
	} req;
	memset(&req, 0, sizeof(req));
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(req.id));
	req.n.nlmsg_type = XFRM_MSG_DELSA;
	req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.id.daddr = p->id.daddr;
	req.id.spi = p->id.spi;
	req.id.family = p->family;
	req.id.proto = p->id.proto;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
	if (fd < 0)
		return;
	struct sockaddr_nl k = { .nl_family = AF_NETLINK };
	if (sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&k, sizeof(k)) >= 0) {
		char ack[512];
		struct timeval tv = { .tv_sec = 2 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)recv(fd, ack, sizeof(ack), 0);
	}
	close(fd);
}

/* Returns 1 when the request was answered here. */
static int fake(int fd, const void *buf, size_t len)
{
	const struct nlmsghdr *h = buf;
	if (len < NLMSG_HDRLEN || h->nlmsg_len > len || !is_xfrm(fd))
		return 0;
	if ((h->nlmsg_type == XFRM_MSG_NEWSA || h->nlmsg_type == XFRM_MSG_UPDSA) &&
	    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct xfrm_usersa_info)) && h->nlmsg_len <= MAX_MSG) {
		const struct xfrm_usersa_info *p = NLMSG_DATA(h);
		if (p->id.proto != IPPROTO_ESP)
			return 0;
		struct sa *s = find(p->id.spi, p->id.proto, &p->id.daddr);
		for (int i = 0; s == NULL && i < MAX_SAS; i++)
			if (!sas[i].used)
				s = &sas[i];
		if (s == NULL)
			return 0;
		s->used = 1;
		s->spi = p->id.spi;
		s->proto = p->id.proto;
		s->daddr = p->id.daddr;
		s->len = h->nlmsg_len;
		memcpy(s->msg, h, h->nlmsg_len);
		note(h->nlmsg_type == XFRM_MSG_NEWSA ? "NEWSA" : "UPDSA", p->id.spi);
		drop_larval(p);
		owe_ack(fd, h);
		return 1;
	}
	if ((h->nlmsg_type == XFRM_MSG_DELSA || h->nlmsg_type == XFRM_MSG_GETSA) &&
	    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct xfrm_usersa_id))) {
		const struct xfrm_usersa_id *id = NLMSG_DATA(h);
		struct sa *s = find(id->spi, id->proto, &id->daddr);
		if (s == NULL)
			return 0;
		if (h->nlmsg_type == XFRM_MSG_DELSA) {
			s->used = 0;
			note("DELSA", id->spi);
			owe_ack(fd, h);
		} else {
			struct nlmsghdr *r = (struct nlmsghdr *)owed;
			memcpy(owed, s->msg, s->len);
			r->nlmsg_type = XFRM_MSG_NEWSA;
			r->nlmsg_flags = 0;
			r->nlmsg_seq = h->nlmsg_seq;
			r->nlmsg_pid = 0;
			owed_len = s->len;
			owed_fd = fd;
		}
		return 1;
	}
	return 0;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	static ssize_t (*real)(int, const void *, size_t);
	if (real == NULL)
		real = dlsym(RTLD_NEXT, "write");
	if (fake(fd, buf, len))
		return (ssize_t)len;
	return real(fd, buf, len);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	static ssize_t (*real)(int, const void *, size_t, int);
	if (real == NULL)
		real = dlsym(RTLD_NEXT, "send");
	if (fake(fd, buf, len))
		return (ssize_t)len;
	return real(fd, buf, len, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
		 socklen_t *fromlen)
{
	static ssize_t (*real)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	if (real == NULL)
		real = dlsym(RTLD_NEXT, "recvfrom");
	if (fd != owed_fd || owed_fd < 0)
		return real(fd, buf, len, flags, from, fromlen);
	size_t n = owed_len < len ? owed_len : len;
	memcpy(buf, owed, n);
	if (!(flags & MSG_PEEK))
		owed_fd = -1;
	if (from != NULL && fromlen != NULL && *fromlen >= sizeof(struct sockaddr_nl)) {
		struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
		memcpy(from, &nl, sizeof(nl));
		*fromlen = sizeof(nl);
	}
	return (ssize_t)n;
}
