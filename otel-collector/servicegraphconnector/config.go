package servicegraphconnector

import (
	"errors"
	"fmt"
	"time"
)

// Config holds the subset of the contrib servicegraph connector's settings that this
// stand-in implements, with the same keys and meanings, so one Collector config serves
// both. Any other key is rejected when the config is loaded (the Collector unmarshals
// strictly), so a config that relies on an unimplemented setting fails `otelcol
// validate` here instead of silently behaving differently.
type Config struct {
	// LatencyHistogramBuckets are the explicit bucket bounds of the two latency
	// histograms. Default: 2ms … 15s (as contrib).
	LatencyHistogramBuckets []time.Duration `mapstructure:"latency_histogram_buckets"`

	// Dimensions are extra attributes (looked up in the resource, then the span) added
	// as labels, prefixed `client_` or `server_` by the side they were read from.
	Dimensions []string `mapstructure:"dimensions"`

	// Store bounds the in-memory store of half-seen edges.
	Store StoreConfig `mapstructure:"store"`

	// StoreExpirationLoop is how often expired edges are swept. Default 2s.
	StoreExpirationLoop time.Duration `mapstructure:"store_expiration_loop"`

	// CacheLoop is how often series that no edge updated for seriesIdleTime are
	// dropped, so that edges seen once (a virtual node named by a one-off peer) do not
	// stay in the output for the Collector's lifetime. Default 1m (unset or 0, as
	// contrib: the idle time itself is fixed there too).
	CacheLoop time.Duration `mapstructure:"cache_loop"`

	// VirtualNodePeerAttributes name, in priority order, the client-span attributes whose
	// value names the server when a client span never finds its server span (an
	// uninstrumented peer). Default: see defaultPeerAttributes.
	VirtualNodePeerAttributes []string `mapstructure:"virtual_node_peer_attributes"`

	// VirtualNodeExtraLabel adds a `virtual_node` label ("client" or "server") to edges
	// that have a virtual node.
	VirtualNodeExtraLabel bool `mapstructure:"virtual_node_extra_label"`

	// MetricsFlushInterval is how often the metrics are sent on. Unset: 60s; 0: after
	// every batch of spans.
	MetricsFlushInterval *time.Duration `mapstructure:"metrics_flush_interval"`

	// DatabaseNameAttributes name, in priority order, the client-span attributes that mark
	// a database call: such a span is an edge on its own (no server span is awaited),
	// with the attribute's value as the server. Default: [db.name].
	DatabaseNameAttributes []string `mapstructure:"database_name_attributes"`
}

// StoreConfig bounds the store of edges waiting for their other half.
type StoreConfig struct {
	// MaxItems is the most edges kept; spans that would add more are dropped.
	MaxItems int `mapstructure:"max_items"`
	// TTL is how long an edge waits for its other half after it was first seen.
	TTL time.Duration `mapstructure:"ttl"`
}

// Validate implements confmap.Validator.
func (c *Config) Validate() error {
	var errs []error
	if c.Store.MaxItems <= 0 {
		errs = append(errs, fmt.Errorf("store.max_items must be positive, got %d", c.Store.MaxItems))
	}
	if c.Store.TTL <= 0 {
		errs = append(errs, fmt.Errorf("store.ttl must be positive, got %s", c.Store.TTL))
	}
	if c.CacheLoop < 0 {
		errs = append(errs, fmt.Errorf("cache_loop must not be negative, got %s", c.CacheLoop))
	}
	if c.StoreExpirationLoop < 0 {
		errs = append(errs, fmt.Errorf("store_expiration_loop must not be negative, got %s", c.StoreExpirationLoop))
	}
	if c.MetricsFlushInterval != nil && *c.MetricsFlushInterval < 0 {
		errs = append(errs, fmt.Errorf("metrics_flush_interval must not be negative, got %s", *c.MetricsFlushInterval))
	}
	for i, b := range c.LatencyHistogramBuckets {
		if b <= 0 || (i > 0 && b <= c.LatencyHistogramBuckets[i-1]) {
			errs = append(errs, errors.New("latency_histogram_buckets must be positive and strictly increasing"))
			break
		}
	}
	return errors.Join(errs...)
}
