package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/plugin"
	"github.com/open-local/open-local/extender/plugin/fwkfake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
)

// runPlugin places the pods through the framework plugin's extension points:
// PreFilter, Filter and Score over the admitted nodes, Reserve inside the
// scheduling cycle, PreBind and the binding itself lagging behind.
func (r *runner) runPlugin(res *Result) error {
	cl, err := r.startCluster()
	if err != nil {
		return err
	}
	defer cl.stop()
	p := plugin.NewWithCache(cl.cache, r.opt.Strategy, cl.kube)
	infos := make(map[string]fwk.NodeInfo, len(r.nodes))
	for _, n := range r.nodes {
		infos[n.Name] = fwkfake.NodeInfo{N: n}
	}
	ctx := context.Background()
	m := &modeLoop{r: r, pods: cl.pods, res: res, lag: r.opt.BindLag}
	m.schedule = func(q queued) (scheduled, string) {
		nodes, reasons, err := r.candidates(q.pod)
		if err != nil {
			return scheduled{}, err.Error()
		}
		cs := fwkfake.NewCycleState()
		if _, st := p.PreFilter(ctx, cs, q.pod, nil); !st.IsSuccess() {
			return scheduled{}, st.Message()
		}
		// Like kube-scheduler, stop filtering once the sample has fit,
		// starting where the previous pod stopped.
		var passed []string
		for i := range nodes {
			if r.sample > 0 && len(passed) >= r.sample {
				break
			}
			n := nodes[(r.next+i)%len(nodes)]
			if st := p.Filter(ctx, cs, q.pod, infos[n]); !st.IsSuccess() {
				// Counted under the reason alone, as kube-scheduler's summary does.
				why, _, _ := strings.Cut(st.Message(), ": ")
				reasons[why]++
				continue
			}
			passed = append(passed, n)
		}
		if len(passed) == 0 {
			return scheduled{}, r.unschedulable(q.req, reasons)
		}
		scores := make(map[string]int64, len(passed))
		for _, n := range passed {
			s, st := p.Score(ctx, cs, q.pod, infos[n])
			if !st.IsSuccess() {
				return scheduled{}, st.Message()
			}
			scores[n] = s
		}
		node := r.pick(passed, func(n string) int64 { return scores[n] })
		if st := p.Reserve(ctx, cs, q.pod, node); !st.IsSuccess() {
			// Reserve judges under the write lock: a refusal here is an
			// over-commit the plugin caught, and the pod goes round again.
			res.OvercommitAttemptsCaught++
			p.Unreserve(ctx, cs, q.pod, node)
			return scheduled{q: q, node: ""}, ""
		}
		return scheduled{q: q, node: node, state: cs}, ""
	}
	m.bind = func(s scheduled) (bool, string) {
		if s.node == "" {
			return false, "reservation refused"
		}
		if st := p.PreBind(ctx, s.state, s.q.pod, s.node); !st.IsSuccess() {
			p.Unreserve(ctx, s.state, s.q.pod, s.node)
			return false, st.Message()
		}
		if err := cl.setSelectedNode(s.q, s.node); err != nil {
			p.Unreserve(ctx, s.state, s.q.pod, s.node)
			return false, err.Error()
		}
		if err := cl.bindPod(s.q.pod, s.node); err != nil {
			return false, err.Error()
		}
		charges, err := cl.allocated(s.q)
		if err != nil {
			return false, err.Error()
		}
		r.record(res, s.q.pod, s.node, charges)
		return true, ""
	}
	m.run()
	return nil
}

// allocated reads back where PreBind recorded each PVC's volume (inline
// volumes name their VG themselves).
func (cl *cluster) allocated(q queued) ([]core.ClaimCharge, error) {
	var out []core.ClaimCharge
	names := pvcNames(q.pod)
	for _, v := range q.req.Volumes {
		nn, ok := names[v.Claim]
		ns, name := nn[0], nn[1]
		if !ok {
			out = append(out, chargeOf(v, v.VG, ""))
			continue
		}
		pvc, err := cl.kube.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		val, ok := pvc.Annotations[plugin.AllocatedAnnotation]
		if !ok {
			return nil, fmt.Errorf("persistentvolumeclaim %s has no %s annotation after PreBind", v.Claim, plugin.AllocatedAnnotation)
		}
		var a plugin.Allocation
		if err := json.Unmarshal([]byte(val), &a); err != nil {
			return nil, fmt.Errorf("persistentvolumeclaim %s: annotation %s: %w", v.Claim, plugin.AllocatedAnnotation, err)
		}
		out = append(out, chargeOf(v, a.VGName, a.Device))
	}
	return out, nil
}
