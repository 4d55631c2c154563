package payrail

import (
	callbacksv1 "github.com/payrail/payrail/generated/go/payrail/callbacks/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The protobuf wire format. Results are payrail.callbacks.v1.GatewayResult in the
// protobuf binary encoding (outcome as OUTCOME_*, occur_time a Timestamp whose
// sub-second nanos are accepted and dropped); a batch is GatewayResultBatch.
//
// Requests: payrail's contracts define no protobuf message for a gateway request, so a
// protobuf gateway receives its requests in the json format, byte for byte, and only
// its results are protobuf (as in the Python SDK).

type protobufFormat struct{}

func (protobufFormat) Name() string        { return "protobuf" }
func (protobufFormat) ContentType() string { return "application/x-protobuf" }

func (protobufFormat) EncodeRequest(r *Request) ([]byte, error) { return JSON.EncodeRequest(r) }

func (protobufFormat) DecodeRequest(data []byte) (*Request, error) {
	return JSON.DecodeRequest(data)
}

// Deterministic marshalling: the same result gives the same bytes as payrail's
// encoder (fields in number order, proto3 defaults left out).
var marshalOptions = proto.MarshalOptions{Deterministic: true}

func resultToPB(r *Result) *callbacksv1.GatewayResult {
	outcome := callbacksv1.Outcome_OUTCOME_APPROVED
	if r.Outcome == Declined {
		outcome = callbacksv1.Outcome_OUTCOME_DECLINED
	}
	return &callbacksv1.GatewayResult{
		EventId:          r.EventID,
		PaymentId:        r.PaymentID,
		Outcome:          outcome,
		FailureCode:      r.FailureCode,
		FailureMessage:   r.FailureMessage,
		GatewayReference: r.GatewayReference,
		OccurTime:        &timestamppb.Timestamp{Seconds: r.OccurTime},
	}
}

func resultFromPB(m *callbacksv1.GatewayResult) (*Result, error) {
	var outcome OutcomeKind
	switch m.GetOutcome() {
	case callbacksv1.Outcome_OUTCOME_APPROVED:
		outcome = Approved
	case callbacksv1.Outcome_OUTCOME_DECLINED:
		outcome = Declined
	default: // OUTCOME_UNSPECIFIED, or a number this version does not know
		return nil, formatErr(ReasonInvalidField, "outcome")
	}
	if m.OccurTime == nil {
		return nil, formatErr(ReasonMissingField, "occur_time")
	}
	if nanos := m.OccurTime.GetNanos(); nanos < 0 || nanos > 999_999_999 {
		return nil, formatErr(ReasonInvalidField, "occur_time")
	}
	r := &Result{
		EventID:          m.GetEventId(),
		PaymentID:        m.GetPaymentId(),
		Outcome:          outcome,
		FailureCode:      m.GetFailureCode(),
		FailureMessage:   m.GetFailureMessage(),
		GatewayReference: m.GetGatewayReference(),
		OccurTime:        m.OccurTime.GetSeconds(),
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

func (protobufFormat) EncodeResult(r *Result) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	data, err := marshalOptions.Marshal(resultToPB(r))
	if err != nil {
		return nil, formatErr(ReasonInvalidField, "")
	}
	if err := checkSize(data, EncodedMaxBytes); err != nil {
		return nil, err
	}
	return data, nil
}

func (protobufFormat) DecodeResult(data []byte) (*Result, error) {
	if err := checkSize(data, EncodedMaxBytes); err != nil {
		return nil, err
	}
	var m callbacksv1.GatewayResult
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, formatErr(ReasonMalformed, "")
	}
	return resultFromPB(&m)
}

func (protobufFormat) EncodeResults(results []Result) ([]byte, error) {
	if err := checkBatch(results); err != nil {
		return nil, err
	}
	batch := &callbacksv1.GatewayResultBatch{Results: make([]*callbacksv1.GatewayResult, len(results))}
	for i := range results {
		if err := results[i].Validate(); err != nil {
			return nil, err
		}
		batch.Results[i] = resultToPB(&results[i])
	}
	data, err := marshalOptions.Marshal(batch)
	if err != nil {
		return nil, formatErr(ReasonInvalidField, "")
	}
	if err := checkSize(data, BatchEncodedMaxBytes); err != nil {
		return nil, err
	}
	return data, nil
}

func (protobufFormat) DecodeResults(data []byte) ([]Result, error) {
	if err := checkSize(data, BatchEncodedMaxBytes); err != nil {
		return nil, err
	}
	var batch callbacksv1.GatewayResultBatch
	if err := proto.Unmarshal(data, &batch); err != nil {
		return nil, formatErr(ReasonMalformed, "")
	}
	results := make([]Result, 0, len(batch.Results))
	for _, m := range batch.Results {
		r, err := resultFromPB(m)
		if err != nil {
			return nil, err
		}
		results = append(results, *r)
	}
	if err := checkBatch(results); err != nil {
		return nil, err
	}
	return results, nil
}
