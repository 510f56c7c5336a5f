/* test_iplimit.c — connections per client address: counts, the rate per
 * second, IPv6 by /64, IPv4-mapped addresses, loopback, sweeping. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "iplimit.h"

#include "check.h"

static struct sockaddr_storage v4(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a = (struct sockaddr_in *)&ss;
  a->sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a->sin_addr);
  return ss;
}

static struct sockaddr_storage v6(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
  a->sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &a->sin6_addr);
  return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

int main(void) {
  iplimit_options o = {.max_conns = 3, .max_rate = 5};
  iplimit *l = iplimit_new(&o);
  iplimit_entry *e[8];
  struct sockaddr_storage a = v4("192.0.2.1"), b = v4("192.0.2.2");

  /* three at once, the fourth refused; one leaves, one more gets in */
  for (int i = 0; i < 3; i++) CHECK(iplimit_enter(l, SA(a), 1000, &e[i]) == 0 && e[i]);
  CHECK(iplimit_enter(l, SA(a), 1000, &e[3]) == -EMFILE && !e[3]);
  CHECK(iplimit_enter(l, SA(b), 1000, &e[4]) == 0); /* another address is not affected */
  iplimit_leave(l, e[0]);
  CHECK(iplimit_enter(l, SA(a), 1000, &e[0]) == 0);
  /* the rate: 5 opened this second (4 for a so far), then refused until the next second */
  iplimit_leave(l, e[0]);
  CHECK(iplimit_enter(l, SA(a), 1500, &e[0]) == 0); /* the 5th */
  iplimit_leave(l, e[0]);
  CHECK(iplimit_enter(l, SA(a), 1600, &e[0]) == -EAGAIN);
  CHECK(iplimit_enter(l, SA(a), 2000, &e[0]) == 0); /* a new second */

  /* IPv6: one /64 is one client; IPv4-mapped counts as the IPv4 address */
  iplimit_options o1 = {.max_conns = 1};
  iplimit *m = iplimit_new(&o1);
  struct sockaddr_storage p1 = v6("2001:db8:1:2::1"), p2 = v6("2001:db8:1:2:ffff::9"), p3 = v6("2001:db8:1:3::1");
  CHECK(iplimit_enter(m, SA(p1), 0, &e[0]) == 0);
  CHECK(iplimit_enter(m, SA(p2), 0, &e[1]) == -EMFILE);
  CHECK(iplimit_enter(m, SA(p3), 0, &e[1]) == 0);
  struct sockaddr_storage mapped = v6("::ffff:192.0.2.7"), plain = v4("192.0.2.7");
  CHECK(iplimit_enter(m, SA(mapped), 0, &e[2]) == 0);
  CHECK(iplimit_enter(m, SA(plain), 0, &e[3]) == -EMFILE);

  /* loopback is not counted unless asked */
  struct sockaddr_storage lo = v4("127.0.0.1"), lo6 = v6("::1"), lomapped = v6("::ffff:127.0.0.1");
  for (int i = 0; i < 5; i++) {
    CHECK(iplimit_enter(m, SA(lo), 0, &e[4]) == 0 && !e[4]);
    CHECK(iplimit_enter(m, SA(lo6), 0, &e[4]) == 0 && !e[4]);
    CHECK(iplimit_enter(m, SA(lomapped), 0, &e[4]) == 0 && !e[4]);
  }
  iplimit_options o2 = {.max_conns = 1, .loopback = true};
  iplimit *n = iplimit_new(&o2);
  CHECK(iplimit_enter(n, SA(lo), 0, &e[5]) == 0 && e[5]);
  CHECK(iplimit_enter(n, SA(lo), 0, &e[6]) == -EMFILE);

  /* sweeping drops idle addresses only */
  uint32_t before = iplimit_count(m);
  iplimit_leave(m, e[0]);
  iplimit_sweep(m, 5000);
  CHECK(iplimit_count(m) == before - 1);

  /* no limits: nothing is tracked */
  iplimit_options none = {0};
  iplimit *z = iplimit_new(&none);
  CHECK(iplimit_enter(z, SA(a), 0, &e[7]) == 0 && !e[7] && iplimit_count(z) == 0);

  iplimit_free(l);
  iplimit_free(m);
  iplimit_free(n);
  iplimit_free(z);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
