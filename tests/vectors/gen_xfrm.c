/* Builds XFRM netlink messages with the kernel's own struct definitions (linux/xfrm.h)
 * and prints them as hex: the byte fixtures for src/kernel/xfrm.rs (tests/vectors/xfrm.txt).
 * cc -o gen_xfrm gen_xfrm.c && ./gen_xfrm > xfrm.txt */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>

static unsigned char buf[4096];
static size_t len;

static void *put(size_t n) { void *p = buf + len; memset(p, 0, NLMSG_ALIGN(n)); len += NLMSG_ALIGN(n); return p; }
static void hdr(int type, int flags, int seq) {
	len = 0;
	struct nlmsghdr *h = put(sizeof *h);
	h->nlmsg_type = type; h->nlmsg_flags = flags; h->nlmsg_seq = seq; h->nlmsg_pid = 0;
}
static void *attr(int type, size_t n) {
	struct nlattr *a = put(NLA_HDRLEN + n);
	a->nla_type = type; a->nla_len = NLA_HDRLEN + n;
	return (char *)a + NLA_HDRLEN;
}
static void done(const char *name) {
	((struct nlmsghdr *)buf)->nlmsg_len = len;
	printf("%s = ", name);
	for (size_t i = 0; i < len; i++) printf("%02x", buf[i]);
	printf("\n");
}
static void v4(xfrm_address_t *a, const char *s) { inet_pton(AF_INET, s, &a->a4); }

int main(void) {
	/* ESP tunnel SA 192.0.2.1 -> 192.0.2.2, SPI 0x11223344, reqid 7, AES-CBC-128 +
	 * HMAC-SHA2-256 truncated to 128 bits, lifetimes soft 1080 / hard 1200 s. */
	hdr(XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 1);
	struct xfrm_usersa_info *sa = put(sizeof *sa);
	sa->sel.family = AF_INET;
	v4(&sa->id.daddr, "192.0.2.2");
	sa->id.spi = htonl(0x11223344);
	sa->id.proto = IPPROTO_ESP;
	v4(&sa->saddr, "192.0.2.1");
	sa->lft.soft_byte_limit = XFRM_INF; sa->lft.hard_byte_limit = XFRM_INF;
	sa->lft.soft_packet_limit = XFRM_INF; sa->lft.hard_packet_limit = XFRM_INF;
	sa->lft.soft_add_expires_seconds = 1080; sa->lft.hard_add_expires_seconds = 1200;
	sa->reqid = 7; sa->family = AF_INET; sa->mode = XFRM_MODE_TUNNEL; sa->replay_window = 32;
	struct xfrm_algo *c = attr(XFRMA_ALG_CRYPT, sizeof *c + 16);
	strcpy(c->alg_name, "cbc(aes)"); c->alg_key_len = 128;
	for (int i = 0; i < 16; i++) c->alg_key[i] = i;
	struct xfrm_algo_auth *au = attr(XFRMA_ALG_AUTH_TRUNC, sizeof *au + 32);
	strcpy(au->alg_name, "hmac(sha256)"); au->alg_key_len = 256; au->alg_trunc_len = 128;
	for (int i = 0; i < 32; i++) au->alg_key[i] = 0x80 + i;
	done("newsa_esp_tunnel_aes_sha256");

	/* AES-GCM-16 (128-bit key + salt) inbound SA 192.0.2.2 -> 192.0.2.1, UDP-encapsulated
	 * 4500 <-> 4500, reqid 9. */
	hdr(XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 2);
	sa = put(sizeof *sa);
	sa->sel.family = AF_INET;
	v4(&sa->id.daddr, "192.0.2.1");
	sa->id.spi = htonl(0xcafe0001);
	sa->id.proto = IPPROTO_ESP;
	v4(&sa->saddr, "192.0.2.2");
	sa->lft.soft_byte_limit = XFRM_INF; sa->lft.hard_byte_limit = XFRM_INF;
	sa->lft.soft_packet_limit = XFRM_INF; sa->lft.hard_packet_limit = XFRM_INF;
	sa->reqid = 9; sa->family = AF_INET; sa->mode = XFRM_MODE_TUNNEL; sa->replay_window = 32;
	struct xfrm_algo_aead *ae = attr(XFRMA_ALG_AEAD, sizeof *ae + 20);
	strcpy(ae->alg_name, "rfc4106(gcm(aes))"); ae->alg_key_len = 160; ae->alg_icv_len = 128;
	for (int i = 0; i < 20; i++) ae->alg_key[i] = 0x40 + i;
	struct xfrm_encap_tmpl *en = attr(XFRMA_ENCAP, sizeof *en);
	en->encap_type = 2; /* UDP_ENCAP_ESPINUDP */
	en->encap_sport = htons(4500); en->encap_dport = htons(4500);
	done("newsa_esp_gcm_udpencap");

	/* AES-CBC/HMAC-SHA1 transport SA 192.0.2.1 -> 192.0.2.2 through a NAT: UDP-encapsulated
	 * 4500 -> 4500, the peer's original address (NAT-OA) 198.51.100.7, reqid 5. */
	hdr(XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 6);
	sa = put(sizeof *sa);
	sa->sel.family = AF_INET;
	v4(&sa->id.daddr, "192.0.2.2");
	sa->id.spi = htonl(0x0badcafe);
	sa->id.proto = IPPROTO_ESP;
	v4(&sa->saddr, "192.0.2.1");
	sa->lft.soft_byte_limit = XFRM_INF; sa->lft.hard_byte_limit = XFRM_INF;
	sa->lft.soft_packet_limit = XFRM_INF; sa->lft.hard_packet_limit = XFRM_INF;
	sa->reqid = 5; sa->family = AF_INET; sa->mode = XFRM_MODE_TRANSPORT; sa->replay_window = 32;
	struct xfrm_algo *e2 = attr(XFRMA_ALG_CRYPT, sizeof *e2 + 16);
	strcpy(e2->alg_name, "cbc(aes)"); e2->alg_key_len = 128;
	for (int i = 0; i < 16; i++) e2->alg_key[i] = i;
	struct xfrm_algo_auth *a2 = attr(XFRMA_ALG_AUTH_TRUNC, sizeof *a2 + 20);
	strcpy(a2->alg_name, "hmac(sha1)"); a2->alg_key_len = 160; a2->alg_trunc_len = 96;
	for (int i = 0; i < 20; i++) a2->alg_key[i] = 0x80 + i;
	en = attr(XFRMA_ENCAP, sizeof *en);
	en->encap_type = 2; /* UDP_ENCAP_ESPINUDP */
	en->encap_sport = htons(4500); en->encap_dport = htons(4500);
	v4(&en->encap_oa, "198.51.100.7");
	done("newsa_esp_transport_udpencap_oa");

	hdr(XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK, 3);
	struct xfrm_usersa_id *id = put(sizeof *id);
	v4(&id->daddr, "192.0.2.2"); id->spi = htonl(0x11223344); id->family = AF_INET; id->proto = IPPROTO_ESP;
	done("delsa");

	/* Outbound tunnel policy 198.51.100.0/24 -> 203.0.113.0/24 via 192.0.2.1 -> 192.0.2.2. */
	hdr(XFRM_MSG_NEWPOLICY, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 4);
	struct xfrm_userpolicy_info *p = put(sizeof *p);
	v4(&p->sel.saddr, "198.51.100.0"); v4(&p->sel.daddr, "203.0.113.0");
	p->sel.prefixlen_s = 24; p->sel.prefixlen_d = 24; p->sel.family = AF_INET;
	p->lft.soft_byte_limit = XFRM_INF; p->lft.hard_byte_limit = XFRM_INF;
	p->lft.soft_packet_limit = XFRM_INF; p->lft.hard_packet_limit = XFRM_INF;
	p->priority = 2000; p->dir = XFRM_POLICY_OUT; p->action = XFRM_POLICY_ALLOW;
	struct xfrm_user_tmpl *t = attr(XFRMA_TMPL, sizeof *t);
	v4(&t->id.daddr, "192.0.2.2"); t->id.proto = IPPROTO_ESP; t->family = AF_INET;
	v4(&t->saddr, "192.0.2.1"); t->reqid = 7; t->mode = XFRM_MODE_TUNNEL;
	t->aalgos = ~0u; t->ealgos = ~0u; t->calgos = ~0u;
	done("newpolicy_out_tunnel");

	hdr(XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, 5);
	struct xfrm_userpolicy_id *pid = put(sizeof *pid);
	v4(&pid->sel.saddr, "198.51.100.0"); v4(&pid->sel.daddr, "203.0.113.0");
	pid->sel.prefixlen_s = 24; pid->sel.prefixlen_d = 24; pid->sel.family = AF_INET;
	pid->dir = XFRM_POLICY_OUT;
	done("delpolicy_out");

	/* MOBIKE: the outbound tunnel policy's template and its state (reqid 7) move from
	 * 192.0.2.1 -> 192.0.2.2 to 192.0.2.11 -> 192.0.2.2, now ESP in UDP 4500 <-> 4500. */
	hdr(XFRM_MSG_MIGRATE, NLM_F_REQUEST | NLM_F_ACK, 8);
	pid = put(sizeof *pid);
	v4(&pid->sel.saddr, "198.51.100.0"); v4(&pid->sel.daddr, "203.0.113.0");
	pid->sel.prefixlen_s = 24; pid->sel.prefixlen_d = 24; pid->sel.family = AF_INET;
	pid->dir = XFRM_POLICY_OUT;
	struct xfrm_user_migrate *um = attr(XFRMA_MIGRATE, sizeof *um);
	v4(&um->old_daddr, "192.0.2.2"); v4(&um->old_saddr, "192.0.2.1");
	v4(&um->new_daddr, "192.0.2.2"); v4(&um->new_saddr, "192.0.2.11");
	um->proto = IPPROTO_ESP; um->mode = XFRM_MODE_TUNNEL; um->reqid = 7;
	um->old_family = AF_INET; um->new_family = AF_INET;
	struct xfrm_encap_tmpl *me = attr(XFRMA_ENCAP, sizeof *me);
	me->encap_type = 2; me->encap_sport = htons(4500); me->encap_dport = htons(4500);
	done("migrate_out_udpencap");

	/* What the kernel multicasts on XFRMNLGRP_ACQUIRE: ICMP from 198.51.100.7 to the
	 * 203.0.113.0/24 policy, template 192.0.2.1 -> 192.0.2.2. */
	hdr(XFRM_MSG_ACQUIRE, 0, 0);
	struct xfrm_user_acquire *aq = put(sizeof *aq);
	v4(&aq->id.daddr, "192.0.2.2"); aq->id.proto = IPPROTO_ESP;
	v4(&aq->saddr, "192.0.2.1");
	v4(&aq->sel.saddr, "198.51.100.7"); v4(&aq->sel.daddr, "203.0.113.0");
	aq->sel.prefixlen_s = 32; aq->sel.prefixlen_d = 24; aq->sel.family = AF_INET; aq->sel.proto = 1;
	aq->policy.dir = XFRM_POLICY_OUT;
	aq->aalgos = ~0u; aq->ealgos = ~0u; aq->calgos = ~0u; aq->seq = 99;
	done("acquire");

	/* What the kernel multicasts on XFRMNLGRP_EXPIRE: the hard lifetime of the ESP SA
	 * 192.0.2.1 -> 192.0.2.2, SPI 0x11223344, ran out. */
	hdr(XFRM_MSG_EXPIRE, 0, 0);
	struct xfrm_user_expire *ex = put(sizeof *ex);
	ex->state.sel.family = AF_INET;
	v4(&ex->state.id.daddr, "192.0.2.2"); ex->state.id.spi = htonl(0x11223344);
	ex->state.id.proto = IPPROTO_ESP;
	v4(&ex->state.saddr, "192.0.2.1"); ex->state.family = AF_INET; ex->state.reqid = 7;
	ex->state.mode = XFRM_MODE_TUNNEL;
	ex->hard = 1;
	done("expire_hard");

	/* XFRM_MSG_ALLOCSPI: a larval ESP state 192.0.2.2 -> 192.0.2.1 (inbound for .1),
	 * SPI in [0x100, 0xffffffff]. */
	hdr(XFRM_MSG_ALLOCSPI, NLM_F_REQUEST | NLM_F_ACK, 5);
	struct xfrm_userspi_info *us = put(sizeof *us);
	us->info.sel.family = AF_INET;
	v4(&us->info.id.daddr, "192.0.2.1"); us->info.id.proto = IPPROTO_ESP;
	v4(&us->info.saddr, "192.0.2.2"); us->info.family = AF_INET;
	us->min = 0x100; us->max = 0xffffffff;
	done("allocspi");

	/* The kernel's answer to it: the larval state with its SPI (0x0000c0de), same seq. */
	hdr(XFRM_MSG_NEWSA, 0, 5);
	struct xfrm_usersa_info *ls = put(sizeof *ls);
	ls->sel.family = AF_INET;
	v4(&ls->id.daddr, "192.0.2.1"); ls->id.spi = htonl(0xc0de); ls->id.proto = IPPROTO_ESP;
	v4(&ls->saddr, "192.0.2.2"); ls->family = AF_INET;
	done("allocspi_answer");
	return 0;
}
