using static TorchSharp.torch;

namespace VptSharp.Inference;

/// <summary>One preprocessed image [3, size, size] (flattened) to classify with one task of a <see cref="TaskStore"/>.</summary>
public sealed record PredictionRequest(string Task, float[] Pixels, int ImageSize, int TopK);

/// <summary>
/// A batch of requests that may mix tasks, answered on a <see cref="TaskStore"/>: every request whose task is in the
/// multi-task engine shares one backbone pass (each sample with its own task's prefixes and head); each remaining task
/// gets one pass of its own model. Answers come back in request order and equal each request answered alone.
/// </summary>
public static class TaskBatch
{
    /// <summary>
    /// Top-k of every request. Tasks are re-resolved by name under the store's lock, so a hot swap cannot pull a model
    /// away mid-batch. A request whose task was unloaded since it was queued gets null; the other requests of the batch
    /// are answered as usual.
    /// </summary>
    public static IReadOnlyList<ClassScore[]?> Predict(TaskStore store, IReadOnlyList<PredictionRequest> batch)
    {
        var results = new ClassScore[]?[batch.Count];
        store.Use(view =>
        {
            var live = batch.Select((req, i) => (req, i)).Where(x => view.Tasks.ContainsKey(x.req.Task)).ToList();
            var viaEngine = live.Where(x => view.Engine is not null && view.EngineIndex.ContainsKey(x.req.Task)).ToList();
            if (viaEngine.Count > 0)
            {
                using var x = Stack(viaEngine.Select(v => v.req).ToList());
                var probs = view.Engine!.Predict(x, viaEngine.Select(v => view.EngineIndex[v.req.Task]).ToArray());
                for (int j = 0; j < viaEngine.Count; j++)
                {
                    using var p = probs[j];
                    results[viaEngine[j].i] = Predictor.TopKOf(p.data<float>().ToArray(), view.Tasks[viaEngine[j].req.Task].Classes, viaEngine[j].req.TopK);
                }
            }
            foreach (var group in live.Where(x => results[x.i] is null).GroupBy(x => x.req.Task))
            {
                var items = group.ToList();
                var task = view.Tasks[group.Key];
                using var x = Stack(items.Select(it => it.req).ToList());
                var top = Predictor.TopK(task.Model, x, task.Classes, items.Max(it => it.req.TopK));
                for (int j = 0; j < items.Count; j++) results[items[j].i] = top[j].Take(items[j].req.TopK).ToArray();
            }
            return 0;
        });
        return results;
    }

    /// <summary>The requests' pixels as one image tensor [N, 3, size, size]; all must share one image size.</summary>
    public static Tensor Stack(IReadOnlyList<PredictionRequest> reqs)
    {
        int size = reqs[0].ImageSize, len = 3 * size * size;
        if (reqs.Any(r => r.ImageSize != size)) throw new ArgumentException("tasks of one backbone must share an image size");
        var buf = new float[reqs.Count * len];
        for (int j = 0; j < reqs.Count; j++) reqs[j].Pixels.CopyTo(buf, j * len);
        return tensor(buf, [reqs.Count, 3, size, size]);
    }
}
