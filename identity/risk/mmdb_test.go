package risk_test

import (
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"rampart.dev/rampart/identity/risk"
)

// writeMMDB writes a MaxMind DB of the given type mapping networks to records.
func writeMMDB(t testing.TB, dir, name, dbType string, records map[string]mmdbtype.Map) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	// Shorter prefixes first: an insert replaces what it covers, so more specific networks
	// must come after the networks containing them.
	cidrs := slices.SortedFunc(maps.Keys(records), func(a, b string) int {
		return mustPrefix(a).Bits() - mustPrefix(b).Bits()
	})
	for _, cidr := range cidrs {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(n, records[cidr]); err != nil {
			t.Fatalf("insert %s: %v", cidr, err)
		}
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// cityRecord is a GeoLite2-City-shaped record (with the fields Rampart ignores, too).
func cityRecord(country, city string, lat, lon float64, accuracy uint16) mmdbtype.Map {
	return mmdbtype.Map{
		"continent": mmdbtype.Map{"code": mmdbtype.String("EU"), "names": mmdbtype.Map{"en": mmdbtype.String("Europe")}},
		"country":   mmdbtype.Map{"iso_code": mmdbtype.String(country), "geoname_id": mmdbtype.Uint32(1), "names": mmdbtype.Map{"en": mmdbtype.String(country), "de": mmdbtype.String("x")}},
		"city":      mmdbtype.Map{"geoname_id": mmdbtype.Uint32(2), "names": mmdbtype.Map{"en": mmdbtype.String(city), "fr": mmdbtype.String(city + "-fr")}},
		"location": mmdbtype.Map{"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon),
			"accuracy_radius": mmdbtype.Uint16(accuracy), "time_zone": mmdbtype.String("Europe/Zurich")},
		"subdivisions": mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String("ZH")}},
	}
}

func asnRecord(asn uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(asn), "autonomous_system_organization": mmdbtype.String(org)}
}

// testMMDB writes City, ASN and Anonymous-IP databases into a temporary directory.
func testMMDB(t testing.TB) risk.MMDBFiles {
	dir := t.TempDir()
	return risk.MMDBFiles{
		City: writeMMDB(t, dir, "City.mmdb", "GeoLite2-City", map[string]mmdbtype.Map{
			"192.0.2.0/24":       cityRecord("CH", "Zurich", 47.3769, 8.5417, 20),
			"192.0.2.128/25":     cityRecord("CH", "Geneva", 46.2044, 6.1432, 10),
			"203.0.113.0/24":     cityRecord("AU", "Sydney", -33.8688, 151.2093, 50),
			"2001:db8:3303::/48": cityRecord("CH", "Zurich", 47.3769, 8.5417, 100),
			// Country only, from the registered country (as for some anycast networks).
			"198.51.100.0/25": {"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("US")}},
			// Coordinates out of range are not believed.
			"198.51.100.128/26": cityRecord("FR", "Nowhere", 123, 8, 5),
		}),
		ASN: writeMMDB(t, dir, "ASN.mmdb", "GeoLite2-ASN", map[string]mmdbtype.Map{
			"192.0.2.0/24":       asnRecord(3303, "Swisscom (Schweiz) AG"),
			"203.0.113.0/24":     asnRecord(1221, "Telstra Limited"),
			"2001:db8:3303::/48": asnRecord(3303, "Swisscom (Schweiz) AG"),
			"198.18.0.0/15":      asnRecord(9009, "M247 Europe SRL"),
		}),
		Anonymous: writeMMDB(t, dir, "Anonymous.mmdb", "GeoIP2-Anonymous-IP", map[string]mmdbtype.Map{
			"198.18.0.0/24": {"is_anonymous": mmdbtype.Bool(true), "is_anonymous_vpn": mmdbtype.Bool(true)},
			"198.18.1.0/24": {"is_anonymous": mmdbtype.Bool(true), "is_tor_exit_node": mmdbtype.Bool(true)},
			"198.18.2.0/24": {"is_anonymous": mmdbtype.Bool(true), "is_hosting_provider": mmdbtype.Bool(true)},
			"198.18.3.0/24": {"is_anonymous": mmdbtype.Bool(true), "is_residential_proxy": mmdbtype.Bool(true)},
		}),
	}
}

func TestMMDBLookup(t *testing.T) {
	db, err := risk.OpenMMDB(testMMDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		ip    string
		want  risk.Location
		found bool
	}{
		{"192.0.2.10", risk.Location{Country: "CH", City: "Zurich", ASN: 3303, Org: "Swisscom (Schweiz) AG", Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: 20}, true},
		{"::ffff:192.0.2.10", risk.Location{Country: "CH", City: "Zurich", ASN: 3303, Org: "Swisscom (Schweiz) AG", Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: 20}, true},
		{"192.0.2.200", risk.Location{Country: "CH", City: "Geneva", ASN: 3303, Org: "Swisscom (Schweiz) AG", Lat: 46.2044, Lon: 6.1432, HasGeo: true, AccuracyKm: 10}, true},
		{"203.0.113.9", risk.Location{Country: "AU", City: "Sydney", ASN: 1221, Org: "Telstra Limited", Lat: -33.8688, Lon: 151.2093, HasGeo: true, AccuracyKm: 50}, true},
		{"2001:db8:3303:1::10", risk.Location{Country: "CH", City: "Zurich", ASN: 3303, Org: "Swisscom (Schweiz) AG", Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: 100}, true},
		{"198.51.100.7", risk.Location{Country: "US"}, true},
		{"198.51.100.130", risk.Location{Country: "FR", City: "Nowhere"}, true},
		{"198.18.0.1", risk.Location{ASN: 9009, Org: "M247 Europe SRL", Anonymous: true}, true},
		{"198.18.1.1", risk.Location{ASN: 9009, Org: "M247 Europe SRL", Anonymous: true}, true},
		{"198.18.2.1", risk.Location{ASN: 9009, Org: "M247 Europe SRL"}, true}, // hosting alone is not anonymous
		{"198.18.3.1", risk.Location{ASN: 9009, Org: "M247 Europe SRL", Anonymous: true}, true},
		{"198.18.200.1", risk.Location{ASN: 9009, Org: "M247 Europe SRL"}, true},
		{"100.64.0.1", risk.Location{}, false},
		{"2001:db9::1", risk.Location{}, false},
	} {
		got, found := db.Lookup(addr(tc.ip))
		if got != tc.want || found != tc.found {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v, %v", tc.ip, got, found, tc.want, tc.found)
		}
	}
}

func TestOpenMMDBErrors(t *testing.T) {
	if _, err := risk.OpenMMDB(risk.MMDBFiles{}); err == nil {
		t.Error("opened no databases")
	}
	files := testMMDB(t)
	missing := filepath.Join(t.TempDir(), "GeoLite2-ASN.mmdb")
	if _, err := risk.OpenMMDB(risk.MMDBFiles{City: files.City, ASN: missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.mmdb")
	if err := os.WriteFile(junk, []byte("this is not a MaxMind database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := risk.OpenMMDB(risk.MMDBFiles{City: junk}); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk file: %v", err)
	}
	// Only an ASN database: locations have networks and no places.
	db, err := risk.OpenMMDB(risk.MMDBFiles{ASN: files.ASN})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if l, ok := db.Lookup(addr("192.0.2.10")); !ok || l.ASN != 3303 || l.Country != "" || l.HasGeo {
		t.Errorf("ASN only: %+v, %v", l, ok)
	}
}

// TestEngineWithMMDB runs the brief's travel example on real database files, with the
// configuration's table in front.
func TestEngineWithMMDB(t *testing.T) {
	db, err := risk.OpenMMDB(testMMDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	office, err := risk.NewTable([]risk.TableEntry{{Prefix: mustPrefix("192.0.2.64/26"), Location: zurichOffice}})
	if err != nil {
		t.Fatal(err)
	}
	geo := risk.Chain{office, db}
	for _, tc := range []struct {
		to     string
		travel bool
	}{{"203.0.113.9", true}, {"192.0.2.200", false}, {"192.0.2.70", false}} {
		h := &risk.MemoryHistory{}
		record(t, h, geo, []risk.Attempt{signIn("alice", "192.0.2.10", laptop, t0)})
		eng, err := risk.NewEngine(risk.Config{}, geo, h)
		if err != nil {
			t.Fatal(err)
		}
		as, err := eng.Assess(context.Background(), signIn("alice", tc.to, laptop, t0.Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if as.Has(risk.CodeImpossibleTravel) != tc.travel || (as.Level == risk.High) != tc.travel {
			t.Errorf("Zurich → %s: %s", tc.to, describe(as))
		}
		if as.Location == nil {
			t.Errorf("%s: no location", tc.to)
		}
	}
}
