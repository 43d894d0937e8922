package cel

import "testing"

func TestCheckPCR(t *testing.T) {
	for i := -1; i <= MaxPCR+1; i++ {
		valid := i >= 0 && i <= MaxPCR
		if err := CheckPCR(i); (err == nil) != valid {
			t.Errorf("CheckPCR(%d) = %v", i, err)
		}
		logOK := valid && i != 16 && i != 23
		if err := CheckLogPCR(i); (err == nil) != logOK {
			t.Errorf("CheckLogPCR(%d) = %v", i, err)
		}
	}
}
