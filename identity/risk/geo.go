package risk

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
)

// Location is what geo data says about an address.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code ("CH"); "" if unknown.
	Country string `json:"country,omitempty"`
	// City is the city's English name; "" if unknown.
	City string `json:"city,omitempty"`
	// ASN is the autonomous system number; 0 if unknown.
	ASN uint `json:"asn,omitempty"`
	// Org is the autonomous system's organisation.
	Org string `json:"org,omitempty"`
	// Lat and Lon are the coordinates in degrees, meaningful only if HasGeo.
	Lat float64 `json:"lat,omitempty"`
	Lon float64 `json:"lon,omitempty"` // see Lat
	// HasGeo reports that Lat and Lon are known (an address can have a country and no
	// coordinates).
	HasGeo bool `json:"has_geo,omitempty"`
	// AccuracyKm is the radius around Lat/Lon the address is likely within; 0 if unknown.
	AccuracyKm uint `json:"accuracy_km,omitempty"`
	// Anonymous marks an anonymising service: a VPN provider, a Tor exit, a public or
	// residential proxy.
	Anonymous bool `json:"anonymous,omitempty"`
}

// Geo locates addresses. Implementations must be safe for concurrent use and must not block on
// the network: the engine calls Lookup on every attempt.
type Geo interface {
	// Lookup returns what is known about ip; false if nothing is.
	Lookup(ip netip.Addr) (Location, bool)
}

// TableEntry gives the location of a network in a Table.
type TableEntry struct {
	// Prefix is the network (no bits set after its length).
	Prefix netip.Prefix `json:"prefix" yaml:"prefix"`
	// Location is what the network is.
	Location Location `json:"location" yaml:"location"`
}

// Table is a Geo from a list of networks, for what Rampart's configuration knows better than any
// database (offices, the lab's VPN egress, cloud regions). The longest prefix containing an
// address wins. It is safe for concurrent use.
type Table struct {
	set prefixSet[Location]
}

// NewTable builds a table. It refuses invalid prefixes, prefixes with bits set after their length,
// a prefix given twice, and coordinates outside the globe, naming the entry.
func NewTable(entries []TableEntry) (*Table, error) {
	t := &Table{}
	var errs []error
	for i, e := range entries {
		p, err := canonicalPrefix(e.Prefix)
		if err == nil {
			err = e.Location.validate()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("geo table entry %d (%s): %w", i, e.Prefix, err))
			continue
		}
		if _, dup := t.set.insert(p, e.Location); dup {
			errs = append(errs, fmt.Errorf("geo table entry %d: %s is given twice", i, p))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// validate checks coordinates, so that distances are meaningful.
func (l Location) validate() error {
	if !l.HasGeo {
		return nil
	}
	if math.IsNaN(l.Lat) || math.IsNaN(l.Lon) || l.Lat < -90 || l.Lat > 90 || l.Lon < -180 || l.Lon > 180 {
		return fmt.Errorf("coordinates %v, %v are not a latitude in [-90, 90] and a longitude in [-180, 180]", l.Lat, l.Lon)
	}
	return nil
}

// Lookup returns the location of the longest prefix containing ip.
func (t *Table) Lookup(ip netip.Addr) (Location, bool) {
	if t == nil {
		return Location{}, false
	}
	_, loc, ok := t.set.lookup(ip)
	return loc, ok
}

// Len returns the number of networks in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.set.n
}

// Chain asks each Geo in turn and returns the first answer: put the configuration's Table before
// the databases so that it overrides them. Nil members are skipped.
type Chain []Geo

// Lookup returns the first member's answer.
func (c Chain) Lookup(ip netip.Addr) (Location, bool) {
	for _, g := range c {
		if g == nil {
			continue
		}
		if loc, ok := g.Lookup(ip); ok {
			return loc, true
		}
	}
	return Location{}, false
}
