package cel

// CountForTest exposes Decode's sizing pass to the external tests.
var CountForTest = count
