package cms

import "testing"

func BenchmarkParse(b *testing.B) {
	f := loadFixture(b, "counter")
	for b.Loop() {
		if _, err := Parse(f.sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	f := loadFixture(b, "counter")
	trust := NewTrustStore(fixtureCert(b))
	for b.Loop() {
		if r := Verify(f.sig, f.insn, trust); r.Verdict != VerdictOK {
			b.Fatal(r.Verdict)
		}
	}
}

func BenchmarkSignKernel(b *testing.B) {
	f := loadFixture(b, "counter")
	key, cert := fixtureKey(b), fixtureCert(b)
	for b.Loop() {
		if _, err := Sign(f.insn, key, cert, SignOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
