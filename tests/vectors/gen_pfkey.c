/* Builds PF_KEY v2 messages with Linux's own struct definitions (linux/pfkeyv2.h,
 * linux/ipsec.h) and prints them as hex: the byte fixtures for src/kernel/pfkey.rs
 * (tests/vectors/pfkey.txt).  cc -o gen_pfkey gen_pfkey.c && ./gen_pfkey > pfkey.txt */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/pfkeyv2.h>
#include <linux/ipsec.h>

static unsigned char buf[4096];
static size_t len;

static void *put(size_t n) { void *p = buf + len; memset(p, 0, n); len += n; return p; }
static void pad8(void) { while (len % 8) buf[len++] = 0; }
static void msg(int type, int satype, int seq) {
	len = 0;
	struct sadb_msg *m = put(sizeof *m);
	m->sadb_msg_version = PF_KEY_V2; m->sadb_msg_type = type;
	m->sadb_msg_satype = satype; m->sadb_msg_seq = seq; m->sadb_msg_pid = 77;
}
static void done(const char *name) {
	((struct sadb_msg *)buf)->sadb_msg_len = len / 8;
	printf("%s = ", name);
	for (size_t i = 0; i < len; i++) printf("%02x", buf[i]);
	printf("\n");
}
static void sin4(const char *s) {
	struct sockaddr_in *sin = put(sizeof *sin);
	sin->sin_family = AF_INET; inet_pton(AF_INET, s, &sin->sin_addr);
}
static void addr(int type, const char *s, int proto, int prefix) {
	size_t at = len;
	struct sadb_address *a = put(sizeof *a);
	a->sadb_address_exttype = type; a->sadb_address_proto = proto;
	a->sadb_address_prefixlen = prefix;
	sin4(s); pad8();
	((struct sadb_address *)(buf + at))->sadb_address_len = (len - at) / 8;
}
static void sa(uint32_t spi, int auth, int enc) {
	struct sadb_sa *s = put(sizeof *s);
	s->sadb_sa_len = sizeof *s / 8; s->sadb_sa_exttype = SADB_EXT_SA;
	s->sadb_sa_spi = htonl(spi); s->sadb_sa_replay = 32;
	s->sadb_sa_state = SADB_SASTATE_MATURE; s->sadb_sa_auth = auth; s->sadb_sa_encrypt = enc;
}
static void lifetime(int type, uint64_t secs) {
	struct sadb_lifetime *l = put(sizeof *l);
	l->sadb_lifetime_len = sizeof *l / 8; l->sadb_lifetime_exttype = type;
	l->sadb_lifetime_addtime = secs;
}
static void key(int type, int byte, int n) {
	size_t at = len;
	struct sadb_key *k = put(sizeof *k);
	k->sadb_key_exttype = type; k->sadb_key_bits = n * 8;
	memset(put(n), byte, n); pad8();
	((struct sadb_key *)(buf + at))->sadb_key_len = (len - at) / 8;
}

int main(void) {
	/* SADB_ADD: ESP tunnel SA 192.0.2.1 -> 192.0.2.2, SPI 0x11223344, AES-CBC-128 +
	 * HMAC-SHA1, reqid 7, lifetimes hard 1200 s / soft 1080 s. */
	msg(SADB_ADD, SADB_SATYPE_ESP, 1);
	sa(0x11223344, SADB_AALG_SHA1HMAC, SADB_X_EALG_AESCBC);
	lifetime(SADB_EXT_LIFETIME_HARD, 1200);
	lifetime(SADB_EXT_LIFETIME_SOFT, 1080);
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.1", IPSEC_ULPROTO_ANY, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.2", IPSEC_ULPROTO_ANY, 32);
	key(SADB_EXT_KEY_AUTH, 0xbb, 20);
	key(SADB_EXT_KEY_ENCRYPT, 0xaa, 16);
	struct sadb_x_sa2 *s2 = put(sizeof *s2);
	s2->sadb_x_sa2_len = sizeof *s2 / 8; s2->sadb_x_sa2_exttype = SADB_X_EXT_SA2;
	s2->sadb_x_sa2_mode = IPSEC_MODE_TUNNEL; s2->sadb_x_sa2_reqid = 7;
	done("linux_add_esp");

	msg(SADB_DELETE, SADB_SATYPE_ESP, 2);
	sa(0x11223344, 0, 0);
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.1", IPSEC_ULPROTO_ANY, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.2", IPSEC_ULPROTO_ANY, 32);
	done("linux_delete_esp");

	msg(SADB_GET, SADB_SATYPE_ESP, 6);
	sa(0x11223344, 0, 0);
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.1", IPSEC_ULPROTO_ANY, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.2", IPSEC_ULPROTO_ANY, 32);
	done("linux_get_esp");

	msg(SADB_GETSPI, SADB_SATYPE_ESP, 3);
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.2", IPSEC_ULPROTO_ANY, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.1", IPSEC_ULPROTO_ANY, 32);
	struct sadb_spirange *r = put(sizeof *r);
	r->sadb_spirange_len = sizeof *r / 8; r->sadb_spirange_exttype = SADB_EXT_SPIRANGE;
	r->sadb_spirange_min = 0x100; r->sadb_spirange_max = 0xffffffff;
	done("linux_getspi");

	/* The kernel's answer (af_key pfkey_getspi -> pfkey_xfrm_state2msg): the larval SA
	 * with SPI 0x0000c0de, then its addresses; the header echoes seq and pid. */
	msg(SADB_GETSPI, SADB_SATYPE_ESP, 3);
	sa(0xc0de, 0, 0);
	((struct sadb_sa *)(buf + sizeof(struct sadb_msg)))->sadb_sa_state = SADB_SASTATE_LARVAL;
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.2", 0, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.1", 0, 32);
	done("linux_getspi_answer");

	/* SADB_UPDATE: the same message as the SADB_ADD above but its type. */
	msg(SADB_UPDATE, SADB_SATYPE_ESP, 1);
	sa(0x11223344, SADB_AALG_SHA1HMAC, SADB_X_EALG_AESCBC);
	lifetime(SADB_EXT_LIFETIME_HARD, 1200);
	lifetime(SADB_EXT_LIFETIME_SOFT, 1080);
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.1", IPSEC_ULPROTO_ANY, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.2", IPSEC_ULPROTO_ANY, 32);
	key(SADB_EXT_KEY_AUTH, 0xbb, 20);
	key(SADB_EXT_KEY_ENCRYPT, 0xaa, 16);
	s2 = put(sizeof *s2);
	s2->sadb_x_sa2_len = sizeof *s2 / 8; s2->sadb_x_sa2_exttype = SADB_X_EXT_SA2;
	s2->sadb_x_sa2_mode = IPSEC_MODE_TUNNEL; s2->sadb_x_sa2_reqid = 7;
	done("linux_update_esp");

	msg(SADB_REGISTER, SADB_SATYPE_ESP, 4);
	done("linux_register_esp");
	msg(SADB_FLUSH, SADB_SATYPE_UNSPEC, 5);
	done("linux_flush");

	/* SADB_X_SPDADD: 198.51.100.0/24 -> 203.0.113.0/24 outbound, ESP tunnel
	 * 192.0.2.1 -> 192.0.2.2, unique reqid 7, priority 2000. */
	for (int add = 1; add >= 0; add--) {
		msg(add ? SADB_X_SPDADD : SADB_X_SPDDELETE, SADB_SATYPE_UNSPEC, add ? 6 : 7);
		addr(SADB_EXT_ADDRESS_SRC, "198.51.100.0", IPSEC_ULPROTO_ANY, 24);
		addr(SADB_EXT_ADDRESS_DST, "203.0.113.0", IPSEC_ULPROTO_ANY, 24);
		size_t at = len;
		struct sadb_x_policy *p = put(sizeof *p);
		p->sadb_x_policy_exttype = SADB_X_EXT_POLICY;
		p->sadb_x_policy_type = IPSEC_POLICY_IPSEC; p->sadb_x_policy_dir = IPSEC_DIR_OUTBOUND;
		p->sadb_x_policy_priority = 2000;
		if (add) {
			size_t rat = len;
			struct sadb_x_ipsecrequest *q = put(sizeof *q);
			q->sadb_x_ipsecrequest_proto = IPPROTO_ESP;
			q->sadb_x_ipsecrequest_mode = IPSEC_MODE_TUNNEL;
			q->sadb_x_ipsecrequest_level = IPSEC_LEVEL_UNIQUE;
			q->sadb_x_ipsecrequest_reqid = 7;
			sin4("192.0.2.1"); sin4("192.0.2.2");
			((struct sadb_x_ipsecrequest *)(buf + rat))->sadb_x_ipsecrequest_len = len - rat;
		}
		pad8();
		((struct sadb_x_policy *)(buf + at))->sadb_x_policy_len = (len - at) / 8;
		done(add ? "linux_spdadd_out" : "linux_spddelete_out");
	}

	/* What af_key sends: the hard expiry of the SA above, and an ACQUIRE for it. */
	msg(SADB_EXPIRE, SADB_SATYPE_ESP, 0);
	sa(0x11223344, SADB_AALG_SHA1HMAC, SADB_X_EALG_AESCBC);
	lifetime(SADB_EXT_LIFETIME_CURRENT, 100);
	lifetime(SADB_EXT_LIFETIME_HARD, 1200);
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.1", 0, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.2", 0, 32);
	done("linux_expire_hard");

	msg(SADB_ACQUIRE, SADB_SATYPE_ESP, 99);
	addr(SADB_EXT_ADDRESS_SRC, "192.0.2.1", 0, 32);
	addr(SADB_EXT_ADDRESS_DST, "192.0.2.2", 0, 32);
	struct sadb_x_policy *ap = put(sizeof *ap);
	ap->sadb_x_policy_len = sizeof *ap / 8; ap->sadb_x_policy_exttype = SADB_X_EXT_POLICY;
	ap->sadb_x_policy_type = IPSEC_POLICY_IPSEC; ap->sadb_x_policy_dir = IPSEC_DIR_OUTBOUND;
	done("linux_acquire");
	return 0;
}
