/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * jhash.h: Bob Jenkins' lookup3 hash over 32-bit words (the kernel's and
 * Katran's flow hash). Header-only and free of BPF helpers so that userspace
 * (tests, tooling) computes exactly the value the data plane computes.
 */
#ifndef BALLAST_JHASH_H
#define BALLAST_JHASH_H

#include <linux/types.h>

#define BALLAST_JHASH_INITVAL 0xdeadbeefu

static inline __u32 ballast_rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

#define BALLAST_JHASH_MIX(a, b, c)                  \
	{                                           \
		a -= c; a ^= ballast_rol32(c, 4);  c += b; \
		b -= a; b ^= ballast_rol32(a, 6);  a += c; \
		c -= b; c ^= ballast_rol32(b, 8);  b += a; \
		a -= c; a ^= ballast_rol32(c, 16); c += b; \
		b -= a; b ^= ballast_rol32(a, 19); a += c; \
		c -= b; c ^= ballast_rol32(b, 4);  b += a; \
	}

#define BALLAST_JHASH_FINAL(a, b, c)                 \
	{                                            \
		c ^= b; c -= ballast_rol32(b, 14);   \
		a ^= c; a -= ballast_rol32(c, 11);   \
		b ^= a; b -= ballast_rol32(a, 25);   \
		c ^= b; c -= ballast_rol32(b, 16);   \
		a ^= c; a -= ballast_rol32(c, 4);    \
		b ^= a; b -= ballast_rol32(a, 14);   \
		c ^= b; c -= ballast_rol32(b, 24);   \
	}

/*
 * ballast_jhash2 - hash @length 32-bit words at @k.
 * @length is a compile-time constant at every call site, so the loop
 * unrolls and the verifier sees a bounded program.
 * Returns: the 32-bit hash.
 */
static inline __u32 ballast_jhash2(const __u32 *k, __u32 length, __u32 initval)
{
	__u32 a, b, c;

	a = b = c = BALLAST_JHASH_INITVAL + (length << 2) + initval;
	/* clang only: GCC (userspace under -Wall -Werror) rejects the unknown
	 * pragma, and its loop is bounded anyway. */
#ifdef __clang__
#pragma unroll
#endif
	for (int i = 0; i < 16 && length > 3; i++) {
		a += k[0];
		b += k[1];
		c += k[2];
		BALLAST_JHASH_MIX(a, b, c);
		length -= 3;
		k += 3;
	}
	switch (length) {
	case 3:
		c += k[2];
		/* fall through */
	case 2:
		b += k[1];
		/* fall through */
	case 1:
		a += k[0];
		BALLAST_JHASH_FINAL(a, b, c);
		break;
	case 0:
		break;
	}
	return c;
}

#endif /* BALLAST_JHASH_H */
