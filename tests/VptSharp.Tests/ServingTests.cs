using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>What `vpt serve` and `vpt eval` / `predict` run, tested in-process: top-k, mixed-task batches, metrics, loaded classifiers.</summary>
public class ServingTests
{
    static readonly string[] Rgb = ["red", "green", "blue"];

    static string SaveTask(LoadedBackbone bb, MethodConfig cfg, string path, int seed)
    {
        manual_seed(seed);
        using var model = PromptedModel.Create(bb.Model, cfg, 3);
        using (no_grad()) foreach (var (_, p) in model.TaskTensors()) p.add_(randn_like(p) * 0.5); // distinct, confident tasks
        TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), Rgb, new Preprocessing { ImageSize = 32 }).Save(path);
        return path;
    }

    static float[] Pixels(int seed)
    {
        manual_seed(seed);
        using var x = randn(3 * 32 * 32);
        return x.data<float>().ToArray();
    }

    [Fact]
    public void TopKOrdersByProbabilityThenClassIndex()
    {
        string[] classes = ["a", "b", "c", "d"];
        var top = Predictor.TopKOf([0.1f, 0.5f, 0.2f, 0.2f], classes, 3);
        Assert.Equal(["b", "c", "d"], top.Select(s => s.Label));
        Assert.Equal([1, 2, 3], top.Select(s => s.Index));
        Assert.Equal([0.5, 0.2, 0.2], top.Select(s => Math.Round(s.Probability, 6)));
        Assert.Equal(4, Predictor.TopKOf([0.25f, 0.25f, 0.25f, 0.25f], classes, 10).Length); // k above the class count: all
        Assert.Equal(["a", "b"], Predictor.TopKOf([0.25f, 0.25f, 0.25f, 0.25f], classes, 2).Select(s => s.Label));

        // The matrix form agrees row by row where probabilities are distinct.
        using var probs = tensor(new float[] { 0.1f, 0.6f, 0.3f, 0.7f, 0.2f, 0.1f }, [2, 3]);
        var rows = Predictor.TopK(probs, Rgb, 2);
        Assert.Equal(["green", "blue"], rows[0].Select(s => s.Label));
        Assert.Equal(["red", "green"], rows[1].Select(s => s.Label));
        Assert.Equal(0.7, rows[1][0].Probability, 6);
    }

    [Fact]
    public void StackPlacesEachRequestInItsRow()
    {
        var a = Pixels(1); var b = Pixels(2);
        using var x = TaskBatch.Stack([new PredictionRequest("t", a, 32, 1), new PredictionRequest("u", b, 32, 1)]);
        Assert.Equal(new long[] { 2, 3, 32, 32 }, x.shape);
        Assert.Equal(a, x[0].flatten().data<float>().ToArray());
        Assert.Equal(b, x[1].flatten().data<float>().ToArray());
        Assert.Throws<ArgumentException>(() => TaskBatch.Stack([new PredictionRequest("t", a, 32, 1), new PredictionRequest("u", new float[3 * 16 * 16], 16, 1)]));
    }

    /// <summary>
    /// A batch mixing a VPT-deep task and a linear probe (both on the one-pass engine) with a VPT-shallow task (its own
    /// model) answers every request exactly as that request alone, and as the task's own model does.
    /// </summary>
    [Fact]
    public void MixedTaskBatchAnswersAsEachTaskAlone()
    {
        string dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 3));
        string folder = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        SaveTask(bb, new PromptConfig { Tokens = 3 }, Path.Combine(folder, "deep.vpt"), 1);
        SaveTask(bb, new LinearProbeConfig(), Path.Combine(folder, "lin.vpt"), 2);
        SaveTask(bb, new PromptConfig { Tokens = 2, Deep = false }, Path.Combine(folder, "shallow.vpt"), 5);
        using var store = new TaskStore(bb, folder);
        Assert.Equal(3, store.Rescan());
        Assert.Equal(["deep", "lin"], store.EngineTasks.Order());

        string[] names = ["deep", "shallow", "lin", "deep", "shallow", "lin", "deep"];
        var batch = names.Select((t, i) => new PredictionRequest(t, Pixels(10 + i), 32, 1 + i % 3)).ToList();
        var mixed = TaskBatch.Predict(store, batch).Select(r => r!).ToList(); // every task is loaded: no null
        Assert.Equal(batch.Count, mixed.Count);
        var tasks = store.Tasks;
        for (int i = 0; i < batch.Count; i++)
        {
            var alone = TaskBatch.Predict(store, [batch[i]])[0]!;
            using var x = TaskBatch.Stack([batch[i]]);
            var own = Predictor.TopK(tasks[batch[i].Task].Model, x, Rgb, batch[i].TopK)[0];
            Assert.Equal(batch[i].TopK, mixed[i].Length);
            Assert.Equal(alone.Select(s => s.Label), mixed[i].Select(s => s.Label));
            Assert.Equal(own.Select(s => s.Label), mixed[i].Select(s => s.Label));
            for (int j = 0; j < own.Length; j++)
            {
                Assert.Equal(alone[j].Probability, mixed[i][j].Probability, 5);
                Assert.Equal(own[j].Probability, mixed[i][j].Probability, 5);
            }
        }
        // The tasks are distinct: the same image gets different answers from different tasks.
        var same = Pixels(99);
        var per = TaskBatch.Predict(store, new[] { "deep", "lin", "shallow" }.Select(t => new PredictionRequest(t, same, 32, 3)).ToList()).Select(r => r!).ToList();
        Assert.True(per.Select(p => string.Join(",", p.Select(s => $"{s.Label}:{s.Probability:F4}"))).Distinct().Count() == 3);

        // A task unloaded while its requests waited: those get null, the rest of the batch is answered as before.
        File.Delete(Path.Combine(folder, "lin.vpt"));
        store.Rescan();
        var afterRemoval = TaskBatch.Predict(store, batch);
        for (int i = 0; i < batch.Count; i++)
            if (batch[i].Task == "lin") Assert.Null(afterRemoval[i]);
            else Assert.Equal(mixed[i].Select(s => s.Label), afterRemoval[i]!.Select(s => s.Label));
    }

    static string Invariant(double v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void MetricsAreCumulativePrometheusText()
    {
        var m = new ServeMetrics();
        m.Request("a", 200, TimeSpan.FromMilliseconds(3));
        m.Request("a", 200, TimeSpan.FromMilliseconds(200));
        m.Request("*", 429, TimeSpan.FromMilliseconds(1));
        m.Batch(3, TimeSpan.FromMilliseconds(10));
        m.Batch(40, TimeSpan.FromMilliseconds(30));
        var lines = m.Prometheus(tasksLoaded: 2, queueLength: 5).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] expected =
        [
            "# TYPE vpt_requests_total counter",
            "vpt_requests_total{task=\"*\",code=\"429\"} 1",
            "vpt_requests_total{task=\"a\",code=\"200\"} 2",
            "# TYPE vpt_request_latency_seconds histogram",
            "vpt_request_latency_seconds_bucket{le=\"0.005\"} 2",
            "vpt_request_latency_seconds_bucket{le=\"0.01\"} 2",
            "vpt_request_latency_seconds_bucket{le=\"0.025\"} 2",
            "vpt_request_latency_seconds_bucket{le=\"0.05\"} 2",
            "vpt_request_latency_seconds_bucket{le=\"0.1\"} 2",
            "vpt_request_latency_seconds_bucket{le=\"0.25\"} 3",
            "vpt_request_latency_seconds_bucket{le=\"0.5\"} 3",
            "vpt_request_latency_seconds_bucket{le=\"1\"} 3",
            "vpt_request_latency_seconds_bucket{le=\"2.5\"} 3",
            "vpt_request_latency_seconds_bucket{le=\"5\"} 3",
            "vpt_request_latency_seconds_bucket{le=\"10\"} 3",
            "vpt_request_latency_seconds_bucket{le=\"+Inf\"} 3",
            $"vpt_request_latency_seconds_sum {Invariant(0.003 + 0.2 + 0.001)}",
            "vpt_request_latency_seconds_count 3",
            "# TYPE vpt_batch_size histogram",
            "vpt_batch_size_bucket{le=\"1\"} 0",
            "vpt_batch_size_bucket{le=\"2\"} 0",
            "vpt_batch_size_bucket{le=\"4\"} 1",
            "vpt_batch_size_bucket{le=\"8\"} 1",
            "vpt_batch_size_bucket{le=\"16\"} 1",
            "vpt_batch_size_bucket{le=\"32\"} 1",
            "vpt_batch_size_bucket{le=\"64\"} 2",
            "vpt_batch_size_bucket{le=\"128\"} 2",
            "vpt_batch_size_bucket{le=\"+Inf\"} 2",
            "vpt_batch_size_sum 43",
            "vpt_batch_size_count 2",
            "# TYPE vpt_batch_seconds_total counter",
            $"vpt_batch_seconds_total {Invariant(0.01 + 0.03)}",
            "# TYPE vpt_tasks_loaded gauge",
            "vpt_tasks_loaded 2",
            "# TYPE vpt_queue_length gauge",
            "vpt_queue_length 5",
        ];
        Assert.Equal(expected, lines);
    }

    /// <summary>A task file loaded for eval/predict: its classes and method, top-k equal to its model's, evaluation equal to the library's.</summary>
    [Fact]
    public void LoadedClassifierAnswersAsTheTaskModel()
    {
        string dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 3));
        string path = SaveTask(bb, new PromptConfig { Tokens = 3 }, Path.Combine(dir, "deep.vpt"), 1);
        using var c = LoadedClassifier.Load(path, bb.Source, "cpu");
        Assert.Equal(Rgb, c.Classes);
        Assert.Equal("vpt-deep", c.Method);
        Assert.Equal(bb.Sha256, c.BackboneSha256);
        using var model = TaskArtifact.Load(path).Attach(bb);
        using var x = TaskBatch.Stack([new PredictionRequest("t", Pixels(1), 32, 2), new PredictionRequest("t", Pixels(2), 32, 2)]);
        var expected = Predictor.TopK(model, x, Rgb, 2);
        var got = c.TopK(x, 2);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(expected[i].Select(s => s.Label), got[i].Select(s => s.Label));
            Assert.Equal(expected[i][0].Probability, got[i][0].Probability, 6);
        }
        var data = FileImageDataset.FromFolder(MakeImageFolder(Path.Combine(dir, "img"), 3, 4));
        var a = c.Evaluate(data, 8, "cpu");
        var b = Evaluation.Evaluate(model, data, c.Preprocessing, 8);
        Assert.Equal(12, a.Count);
        Assert.Equal(b.Predictions, a.Predictions);
        Assert.Equal(b.Loss, a.Loss, 6);
        var missing = Assert.Throws<InputFileException>(() => EnsembleArtifact.Load(Path.Combine(dir, "nope.ens")));
        Assert.DoesNotContain("--", missing.Message); // the fact only; the CLI adds how to build one
    }
}
