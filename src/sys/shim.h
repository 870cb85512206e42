/*
 * DPDK's fast-path functions are `static inline` and have no symbol to link against.
 * Each shim_<name> below is a real function that calls the DPDK function of that name.
 */
#ifndef MACVTAP_SHIM_H
#define MACVTAP_SHIM_H

#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			       struct rte_mbuf **pkts, uint16_t nb_pkts);
uint16_t shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			       struct rte_mbuf **pkts, uint16_t nb_pkts);

struct rte_mbuf *shim_rte_pktmbuf_alloc(struct rte_mempool *mp);
int shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
				unsigned int count);
void shim_rte_pktmbuf_free(struct rte_mbuf *m);
uint16_t shim_rte_pktmbuf_data_room_size(struct rte_mempool *mp);
char *shim_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int shim_rte_pktmbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail);

unsigned int shim_rte_ring_enqueue_burst(struct rte_ring *r, void *const *objs,
					 unsigned int n);
unsigned int shim_rte_ring_dequeue_burst(struct rte_ring *r, void **objs,
					 unsigned int n);
unsigned int shim_rte_ring_count(const struct rte_ring *r);

unsigned int shim_rte_lcore_id(void);
int shim_rte_errno(void);
uint64_t shim_rte_rdtsc(void);

#endif
