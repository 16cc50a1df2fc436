package risk

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// MMDBFiles names MaxMind-format databases (GeoLite2 or GeoIP2, or others with the same record
// layout). Any of them may be empty; at least one must be given.
type MMDBFiles struct {
	// City is a City (or Country) database: country.iso_code (falling back to
	// registered_country.iso_code), city.names.en, location.latitude, location.longitude,
	// location.accuracy_radius.
	City string
	// ASN is an ASN (or ISP) database: autonomous_system_number, autonomous_system_organization.
	ASN string
	// Anonymous is an Anonymous-IP database: is_anonymous_vpn, is_tor_exit_node,
	// is_public_proxy, is_residential_proxy. is_hosting_provider alone does not count as
	// anonymous: labs sign in from their own cloud machines.
	Anonymous string
}

// MMDB is a Geo over MaxMind-format databases, opened memory-mapped. Lookups are safe for
// concurrent use; Close must not race them. To pick up a new database release, open a new MMDB
// and swap it in (behind a Geo of your own) before closing the old one.
type MMDB struct {
	city, asn, anon *maxminddb.Reader
}

// OpenMMDB opens the named databases.
func OpenMMDB(files MMDBFiles) (*MMDB, error) {
	if files.City == "" && files.ASN == "" && files.Anonymous == "" {
		return nil, errors.New("geo databases: no file given (city, asn or anonymous)")
	}
	m := &MMDB{}
	for _, f := range []struct {
		path string
		into **maxminddb.Reader
	}{{files.City, &m.city}, {files.ASN, &m.asn}, {files.Anonymous, &m.anon}} {
		if f.path == "" {
			continue
		}
		r, err := maxminddb.Open(f.path)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("geo database %s: %w", f.path, err)
		}
		*f.into = r
	}
	return m, nil
}

// Close releases the databases.
func (m *MMDB) Close() error {
	var errs []error
	for _, r := range []*maxminddb.Reader{m.city, m.asn, m.anon} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// The parts of MaxMind records the engine uses; everything else is skipped while decoding.
type (
	mmdbCity struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
		RegisteredCountry struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"registered_country"`
		City struct {
			Names struct {
				En string `maxminddb:"en"`
			} `maxminddb:"names"`
		} `maxminddb:"city"`
		Location struct {
			Latitude       *float64 `maxminddb:"latitude"`
			Longitude      *float64 `maxminddb:"longitude"`
			AccuracyRadius uint     `maxminddb:"accuracy_radius"`
		} `maxminddb:"location"`
	}
	mmdbASN struct {
		Number uint   `maxminddb:"autonomous_system_number"`
		Org    string `maxminddb:"autonomous_system_organization"`
	}
	mmdbAnonymous struct {
		VPN              bool `maxminddb:"is_anonymous_vpn"`
		Tor              bool `maxminddb:"is_tor_exit_node"`
		PublicProxy      bool `maxminddb:"is_public_proxy"`
		ResidentialProxy bool `maxminddb:"is_residential_proxy"`
	}
)

// decode looks ip up in r; false if r is nil, ip is not in it, or its record is malformed (a
// broken record must not fail the sign-in: the signals that need it simply do not fire).
func decode(r *maxminddb.Reader, ip netip.Addr, v any) bool {
	if r == nil {
		return false
	}
	res := r.Lookup(ip)
	if !res.Found() {
		return false
	}
	return res.Decode(v) == nil
}

// Lookup merges what the databases know about ip.
func (m *MMDB) Lookup(ip netip.Addr) (Location, bool) {
	ip = normAddr(ip)
	var loc Location
	found := false
	var c mmdbCity
	if decode(m.city, ip, &c) {
		found = true
		loc.Country = c.Country.ISOCode
		if loc.Country == "" {
			loc.Country = c.RegisteredCountry.ISOCode
		}
		loc.City = c.City.Names.En
		if lat, lon := c.Location.Latitude, c.Location.Longitude; lat != nil && lon != nil {
			cand := Location{Lat: *lat, Lon: *lon, HasGeo: true}
			if cand.validate() == nil {
				loc.Lat, loc.Lon, loc.HasGeo = *lat, *lon, true
				loc.AccuracyKm = c.Location.AccuracyRadius
			}
		}
	}
	var a mmdbASN
	if decode(m.asn, ip, &a) {
		found = true
		loc.ASN, loc.Org = a.Number, a.Org
	}
	var an mmdbAnonymous
	if decode(m.anon, ip, &an) {
		found = true
		loc.Anonymous = an.VPN || an.Tor || an.PublicProxy || an.ResidentialProxy
	}
	return loc, found
}
