package servicegraphconnector

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
)

// connectionType is the `connection_type` label of an edge.
type connectionType string

const (
	connectionUnset       connectionType = ""
	connectionMessaging   connectionType = "messaging_system"
	connectionDatabase    connectionType = "database"
	connectionVirtualNode connectionType = "virtual_node"
)

const (
	scopeName         = "traces_service_graph"
	metricRequests    = "traces_service_graph_request_total"
	metricFailed      = "traces_service_graph_request_failed_total"
	metricServerTime  = "traces_service_graph_request_server"
	metricClientTime  = "traces_service_graph_request_client"
	defaultFlushEvery = 60 * time.Second
	defaultCacheLoop  = time.Minute
	// seriesIdleTime is how long a series may go without an edge before cache_loop
	// drops it: contrib's fixed value.
	seriesIdleTime = 15 * time.Minute
)

var (
	// defaultLatencyBounds are contrib's default buckets, in seconds.
	defaultLatencyBounds = []float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15}
	// defaultPeerAttributes name an uninstrumented server when the config does not.
	defaultPeerAttributes = []string{"peer.service", "db.name", "server.address", "net.peer.name", "rpc.service", "net.sock.peer.addr"}
	defaultDatabaseAttrs  = []string{"db.name"}
)

// edgeKey identifies a request: the client span's id, which is the server span's parent.
type edgeKey struct {
	traceID pcommon.TraceID
	spanID  pcommon.SpanID
}

// edge is one request, filled in from its client side, its server side, or both.
type edge struct {
	client, server string
	connection     connectionType
	clientSeconds  float64
	serverSeconds  float64
	failed         bool
	dimensions     map[string]string
	peer           string // the server's name from virtual_node_peer_attributes, if any
	rootServer     bool   // the server span has no parent: its caller is "user"
	virtualNode    string // "client" or "server" once a side was made up
	expiresAt      time.Time
}

func (e *edge) complete() bool { return e.client != "" && e.server != "" }

// histogram is one explicit-bucket histogram data point being accumulated.
type histogram struct {
	counts []uint64
	sum    float64
	count  uint64
}

func (h *histogram) record(bounds []float64, v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(bounds)+1)
	}
	// Bucket i holds (bounds[i-1], bounds[i]]; the last one everything above.
	h.counts[sort.SearchFloat64s(bounds, v)]++
	h.sum += v
	h.count++
}

// series is the accumulated, cumulative state of one label set.
type series struct {
	attributes    pcommon.Map
	requests      int64
	failed        int64
	client        histogram
	server        histogram
	hasFailedStat bool
	lastUpdated   time.Time
}

type serviceGraphConnector struct {
	cfg        *Config
	logger     *zap.Logger
	next       consumer.Metrics
	bounds     []float64
	peerAttrs  []string
	dbAttrs    []string
	flushEvery time.Duration
	cacheLoop  time.Duration
	now        func() time.Time

	mu        sync.Mutex
	edges     map[edgeKey]*edge
	series    map[string]*series
	startTime pcommon.Timestamp

	stop chan struct{}
	done sync.WaitGroup
}

func newConnector(logger *zap.Logger, cfg *Config, next consumer.Metrics) *serviceGraphConnector {
	c := &serviceGraphConnector{
		cfg:        cfg,
		logger:     logger,
		next:       next,
		bounds:     defaultLatencyBounds,
		peerAttrs:  defaultPeerAttributes,
		dbAttrs:    defaultDatabaseAttrs,
		flushEvery: defaultFlushEvery,
		cacheLoop:  defaultCacheLoop,
		now:        time.Now,
		edges:      make(map[edgeKey]*edge),
		series:     make(map[string]*series),
		stop:       make(chan struct{}),
	}
	if cfg.LatencyHistogramBuckets != nil {
		c.bounds = make([]float64, len(cfg.LatencyHistogramBuckets))
		for i, d := range cfg.LatencyHistogramBuckets {
			c.bounds[i] = d.Seconds()
		}
	}
	if cfg.VirtualNodePeerAttributes != nil {
		c.peerAttrs = cfg.VirtualNodePeerAttributes
	}
	if cfg.DatabaseNameAttributes != nil {
		c.dbAttrs = cfg.DatabaseNameAttributes
	}
	if cfg.MetricsFlushInterval != nil {
		c.flushEvery = *cfg.MetricsFlushInterval
	}
	if cfg.CacheLoop > 0 {
		c.cacheLoop = cfg.CacheLoop
	}
	return c
}

// Start runs the loops that expire half-seen edges and idle series, and send the
// metrics on.
func (c *serviceGraphConnector) Start(context.Context, component.Host) error {
	c.startTime = pcommon.NewTimestampFromTime(c.now())
	c.every(c.cfg.StoreExpirationLoop, func() { c.expire(c.now()) })
	c.every(c.cacheLoop, func() { c.dropIdleSeries(c.now()) })
	c.every(c.flushEvery, func() {
		if err := c.flush(context.Background()); err != nil {
			c.logger.Warn("sending service graph metrics failed", zap.Error(err))
		}
	})
	c.logger.Info("service graph connector started (this project's stand-in for contrib's)")
	return nil
}

// every runs f at each interval until Shutdown; a non-positive interval runs nothing.
func (c *serviceGraphConnector) every(interval time.Duration, f func()) {
	if interval <= 0 {
		return
	}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				f()
			case <-c.stop:
				return
			}
		}
	}()
}

// Shutdown stops the loops. Edges still waiting are dropped, as in contrib.
func (c *serviceGraphConnector) Shutdown(context.Context) error {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.done.Wait()
	return nil
}

func (c *serviceGraphConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeTraces files every client and server span under its edge.
func (c *serviceGraphConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	c.mu.Lock()
	now := c.now()
	dropped := 0
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		resource := rs.Resource().Attributes()
		service, ok := resource.Get("service.name")
		if !ok || service.AsString() == "" {
			continue
		}
		serviceName := service.AsString()
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				if !c.consumeSpan(now, serviceName, resource, spans.At(k)) {
					dropped++
				}
			}
		}
	}
	c.mu.Unlock()
	if dropped > 0 {
		c.logger.Warn("service graph store full: spans dropped", zap.Int("dropped", dropped),
			zap.Int("max_items", c.cfg.Store.MaxItems))
	}
	if c.flushEvery == 0 {
		if err := c.flush(ctx); err != nil {
			// As contrib: a metrics failure must not fail the traces pipeline.
			c.logger.Warn("sending service graph metrics failed", zap.Error(err))
		}
	}
	return nil
}

// consumeSpan files one span; it reports false when the store was full. c.mu is held.
func (c *serviceGraphConnector) consumeSpan(now time.Time, serviceName string, resource pcommon.Map, span ptrace.Span) bool {
	seconds := float64(span.EndTimestamp()-span.StartTimestamp()) / float64(time.Second)
	if span.EndTimestamp() < span.StartTimestamp() {
		seconds = 0
	}
	failed := span.Status().Code() == ptrace.StatusCodeError
	attrs := span.Attributes()

	switch kind := span.Kind(); kind {
	case ptrace.SpanKindClient, ptrace.SpanKindProducer:
		return c.upsert(now, edgeKey{span.TraceID(), span.SpanID()}, func(e *edge) {
			e.client = serviceName
			e.clientSeconds = seconds
			e.failed = e.failed || failed
			if kind == ptrace.SpanKindProducer {
				e.connection = connectionMessaging
			}
			c.addDimensions("client_", e.dimensions, resource, attrs)
			if peer, ok := firstValue(c.peerAttrs, attrs); ok {
				e.peer = peer
			}
			// A database call has no server span to wait for: the client span is the edge.
			if db, ok := firstValue(c.dbAttrs, resource, attrs); ok {
				e.connection = connectionDatabase
				e.server = db
				e.serverSeconds = seconds
			}
		})
	case ptrace.SpanKindServer, ptrace.SpanKindConsumer:
		return c.upsert(now, edgeKey{span.TraceID(), span.ParentSpanID()}, func(e *edge) {
			e.server = serviceName
			e.serverSeconds = seconds
			e.failed = e.failed || failed
			e.rootServer = span.ParentSpanID().IsEmpty()
			if kind == ptrace.SpanKindConsumer {
				e.connection = connectionMessaging
			}
			c.addDimensions("server_", e.dimensions, resource, attrs)
		})
	default:
		return true
	}
}

// upsert applies fill to the edge under key, creating it if needed, and records and
// forgets it once both sides are known. It reports false when the store is full.
func (c *serviceGraphConnector) upsert(now time.Time, key edgeKey, fill func(*edge)) bool {
	e, ok := c.edges[key]
	if !ok {
		if len(c.edges) >= c.cfg.Store.MaxItems {
			return false
		}
		e = &edge{dimensions: map[string]string{}, expiresAt: now.Add(c.cfg.Store.TTL)}
	}
	fill(e)
	if e.complete() {
		delete(c.edges, key)
		c.record(e)
	} else if !ok {
		c.edges[key] = e
	}
	return true
}

// expire drops edges whose other half did not come within store.ttl, recording those
// that a virtual node completes: a named peer for a lone client span, "user" for a lone
// root server span.
func (c *serviceGraphConnector) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, e := range c.edges {
		if now.Before(e.expiresAt) {
			continue
		}
		delete(c.edges, key)
		switch {
		case e.server == "" && e.peer != "":
			e.server, e.connection, e.virtualNode = e.peer, connectionVirtualNode, "server"
		case e.client == "" && e.rootServer:
			e.client, e.connection, e.virtualNode = "user", connectionVirtualNode, "client"
		default:
			c.logger.Debug("service graph edge expired unpaired",
				zap.String("client", e.client), zap.String("server", e.server))
			continue
		}
		c.record(e)
	}
}

// dropIdleSeries forgets the series that no edge updated within seriesIdleTime.
func (c *serviceGraphConnector) dropIdleSeries(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, s := range c.series {
		if now.Sub(s.lastUpdated) > seriesIdleTime {
			delete(c.series, key)
		}
	}
}

// record adds a complete edge to its series. c.mu is held.
func (c *serviceGraphConnector) record(e *edge) {
	labels := map[string]string{
		"client":          e.client,
		"server":          e.server,
		"connection_type": string(e.connection),
	}
	for k, v := range e.dimensions {
		labels[k] = v
	}
	if c.cfg.VirtualNodeExtraLabel && e.virtualNode != "" {
		labels["virtual_node"] = e.virtualNode
	}
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(labels[k])
		b.WriteByte(0)
	}
	b.WriteString(strconv.FormatBool(e.failed))
	key := b.String()

	s, ok := c.series[key]
	if !ok {
		s = &series{attributes: pcommon.NewMap()}
		for _, k := range names {
			s.attributes.PutStr(k, labels[k])
		}
		s.attributes.PutBool("failed", e.failed)
		c.series[key] = s
	}
	s.requests++
	s.lastUpdated = c.now()
	if e.failed {
		s.failed++
		s.hasFailedStat = true
	}
	s.client.record(c.bounds, e.clientSeconds)
	s.server.record(c.bounds, e.serverSeconds)
}

// flush sends the cumulative metrics of every series seen so far.
func (c *serviceGraphConnector) flush(ctx context.Context) error {
	md := c.buildMetrics()
	if md.MetricCount() == 0 {
		return nil
	}
	return c.next.ConsumeMetrics(ctx, md)
}

func (c *serviceGraphConnector) buildMetrics() pmetric.Metrics {
	md := pmetric.NewMetrics()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.series) == 0 {
		return md
	}
	keys := make([]string, 0, len(c.series))
	for k := range c.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	now := pcommon.NewTimestampFromTime(c.now())

	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(scopeName)
	requests := newSum(sm, metricRequests, "Requests between two nodes")
	var failed *pmetric.Sum // created only once some series failed, as contrib does
	serverTime := newHistogram(sm, metricServerTime, "Request duration between two nodes as seen from the server")
	clientTime := newHistogram(sm, metricClientTime, "Request duration between two nodes as seen from the client")
	for _, k := range keys {
		s := c.series[k]
		dp := requests.DataPoints().AppendEmpty()
		c.stamp(s.attributes, dp.Attributes(), dp.SetStartTimestamp, dp.SetTimestamp, now)
		dp.SetIntValue(s.requests)
		if s.hasFailedStat {
			if failed == nil {
				sum := newSum(sm, metricFailed, "Failed requests between two nodes")
				failed = &sum
			}
			dp := failed.DataPoints().AppendEmpty()
			c.stamp(s.attributes, dp.Attributes(), dp.SetStartTimestamp, dp.SetTimestamp, now)
			dp.SetIntValue(s.failed)
		}
		c.histogramPoint(serverTime, s.attributes, &s.server, now)
		c.histogramPoint(clientTime, s.attributes, &s.client, now)
	}
	return md
}

func (c *serviceGraphConnector) stamp(from, to pcommon.Map, setStart, setTime func(pcommon.Timestamp), now pcommon.Timestamp) {
	from.CopyTo(to)
	setStart(c.startTime)
	setTime(now)
}

func (c *serviceGraphConnector) histogramPoint(h pmetric.Histogram, attrs pcommon.Map, acc *histogram, now pcommon.Timestamp) {
	dp := h.DataPoints().AppendEmpty()
	c.stamp(attrs, dp.Attributes(), dp.SetStartTimestamp, dp.SetTimestamp, now)
	dp.ExplicitBounds().FromRaw(c.bounds)
	dp.BucketCounts().FromRaw(acc.counts)
	dp.SetCount(acc.count)
	dp.SetSum(acc.sum)
}

func newSum(sm pmetric.ScopeMetrics, name, description string) pmetric.Sum {
	m := sm.Metrics().AppendEmpty()
	m.SetName(name)
	m.SetDescription(description)
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return sum
}

func newHistogram(sm pmetric.ScopeMetrics, name, description string) pmetric.Histogram {
	m := sm.Metrics().AppendEmpty()
	m.SetName(name)
	m.SetDescription(description)
	m.SetUnit("s")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return h
}

// addDimensions copies the configured dimensions, prefixed, into dims. c.mu is held.
func (c *serviceGraphConnector) addDimensions(prefix string, dims map[string]string, resource, attrs pcommon.Map) {
	for _, d := range c.cfg.Dimensions {
		if v, ok := firstValue([]string{d}, resource, attrs); ok {
			dims[prefix+d] = v
		}
	}
}

// firstValue returns the first non-empty value of names (in order), looked up in each
// map in turn.
func firstValue(names []string, maps ...pcommon.Map) (string, bool) {
	for _, name := range names {
		for _, m := range maps {
			if v, ok := m.Get(name); ok {
				if s := v.AsString(); s != "" {
					return s, true
				}
			}
		}
	}
	return "", false
}
